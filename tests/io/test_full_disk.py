"""A full disk gives a clear error naming the store, and no partial store (a real tmpfs, as root)."""

import os
import subprocess

import numpy as np
import pytest

from aria.cli import main
from aria.io.stores import ScoreWriter, atomic_dir, write_features


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _leftovers(d):
    return sorted(p.name for p in d.iterdir())


def test_score_store_on_a_full_disk(small_disk):
    rng = np.random.default_rng(0)
    S = rng.standard_normal((4000, 64)).astype(np.float32)  # 1 MiB of incompressible floats
    out = small_disk / "scores" / "trak.zarr"
    with pytest.raises(OSError, match=r"trak\.zarr: no space left on device while writing it") as info:
        with ScoreWriter(out, [f"s{i}" for i in range(4000)], [f"q{j}" for j in range(64)], row_chunk=500) as w:
            for start in range(0, 4000, 500):
                w.write(start, S[start : start + 500])
    assert "nothing was written" in str(info.value)
    assert _leftovers(out.parent) == []  # neither the store nor its temporary sibling


def test_feature_store_on_a_full_disk(small_disk):
    rng = np.random.default_rng(1)
    out = small_disk / "m0_c0.zarr"
    with pytest.raises(OSError, match=r"m0_c0\.zarr: no space left on device"):
        write_features(
            out,
            train=rng.standard_normal((5000, 64)),
            query=rng.standard_normal((4, 64)),
            train_ids=[f"s{i}" for i in range(5000)],
            query_ids=[f"q{i}" for i in range(4)],
        )
    assert _leftovers(small_disk) == []


def test_cli_says_the_disk_is_full_without_a_traceback(small_disk, tmp_path, capsys):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "m.npy", rng.standard_normal((3000, 64)).astype(np.float32))
    (tmp_path / "rows.txt").write_text("".join(f"s{i}\n" for i in range(3000)))
    (tmp_path / "cols.txt").write_text("".join(f"q{i}\n" for i in range(64)))
    out = small_disk / "ext.zarr"
    argv = ["import-scores", str(tmp_path / "m.npy"), "--rows", str(tmp_path / "rows.txt")]
    rc = main([*argv, "--cols", str(tmp_path / "cols.txt"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{out}: no space left on device" in err and "Traceback" not in err
    assert _leftovers(small_disk) == []


def test_a_killed_writers_temporary_sibling_is_cleared(tmp_path):
    out = tmp_path / "s.zarr"
    stale = tmp_path / ".s.zarr.tmp-deadbeef"  # what a writer killed by SIGKILL leaves
    (stale / "scores").mkdir(parents=True)
    other = tmp_path / ".t.zarr.tmp-deadbeef"  # another store's: not touched
    other.mkdir()
    with atomic_dir(out) as tmp:
        tmp.mkdir()
    assert _leftovers(tmp_path) == [".t.zarr.tmp-deadbeef", "s.zarr"]
