"""Jobs never share a numba JIT cache, and a native crash leaves a log that says what to do (issue 6).

The first test reproduces issue 6's failure: two feature jobs start at once on a
fresh, shared numba cache folder, then a third must still run and give the same
features. Before the fix the jobs compiled into that shared folder (or into the
venv's ``librosa/__pycache__``), and this very setup left a corrupt cache there
in most runs (SIGSEGV in the later job). It uses nothing but the ``aria``
command, so it runs against old code too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from conftest import REPO, run_snakemake

BIN = Path(sys.executable).parent
SITE_PACKAGES = Path(np.__file__).resolve().parents[1]


def _tone_wav(path: Path, *, seed: int, sr: int = 22050, dur_s: float = 4.0) -> None:
    """A few seconds of seeded notes over a click track (16-bit PCM, like the demo corpus)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(dur_s * sr)) / sr
    y = np.zeros_like(t)
    for i, f in enumerate(rng.uniform(150, 600, size=int(dur_s * 2))):
        on = (t >= i * 0.5) & (t < i * 0.5 + 0.45)
        y[on] += 0.3 * np.sin(2 * np.pi * f * t[on])
    y += 0.2 * (np.mod(t, 0.5) < 0.01) * rng.standard_normal(len(t))
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")


def _manifest(folder: Path, names: list[str], splits: list[str] | None = None) -> Path:
    splits = splits or ["train"] * len(names)
    df = pd.DataFrame(dict(track_id=[Path(n).stem for n in names], path=names, genre="test", split=splits))
    path = folder / f"manifest_{'_'.join(Path(n).stem for n in names)}.csv"
    df.to_csv(path, index=False)
    return path


def _env(**extra) -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def _features(manifest: Path, root: Path, out: Path, env: dict) -> subprocess.Popen:
    params = json.dumps({"shard": 0, "n_shards": 1, "sr": 22050, "root": str(root)})
    return subprocess.Popen(
        [
            str(BIN / "aria"),
            "audio-features",
            "--manifest",
            str(manifest),
            "--params",
            params,
            "--out",
            str(out.with_suffix(".npz")),
            "--out-failures",
            str(out.with_suffix(".csv")),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _numba_files(root: Path, newer_than: float = 0.0) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc") and p.stat().st_mtime > newer_than]


def test_parallel_feature_jobs_on_a_fresh_shared_cache_folder(tmp_path):
    """Two jobs at once on a fresh shared NUMBA_CACHE_DIR, then a third: all run, none writes there."""
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        _tone_wav(audio / f"t{i}.wav", seed=i)
    shared = tmp_path / "shared_numba_cache"
    shared.mkdir()
    env = _env(NUMBA_CACHE_DIR=str(shared))  # what a cluster user might export for the whole job array
    ma, mb = _manifest(audio, ["t0.wav", "t1.wav"]), _manifest(audio, ["t2.wav"])
    start = time.time()

    first = [_features(ma, audio, tmp_path / "a", env), _features(mb, audio, tmp_path / "b", env)]
    outs = [p.communicate()[0] for p in first]
    third = _features(ma, audio, tmp_path / "c", env)
    outs.append(third.communicate()[0])
    for p, out in zip([*first, third], outs):
        assert p.returncode == 0, f"job exited {p.returncode}:\n{out[-3000:]}"

    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "c.npz") as c:
        assert list(a["track_ids"]) == ["t0", "t1"]
        for key in a.files:
            np.testing.assert_array_equal(a[key], c[key], err_msg=key)
    # the jobs compiled into private folders only: nothing in the shared folder, nothing in the venv
    assert _numba_files(shared) == []
    assert _numba_files(SITE_PACKAGES, newer_than=start) == []


def test_jobs_start_from_the_template_and_compile_nothing(tiny_run):
    """Every job of the tiny workflow (audio included) finds all its kernels in the JIT template."""
    logs = sorted((tiny_run / "results").glob("*/logs/**/*.log"))
    assert len(logs) > 20
    texts = {p: p.read_text(errors="replace") for p in logs}
    if any("no template at" in t for t in texts.values()):
        pytest.skip("no JIT template in this environment (make venv builds it)")
    compiled = [str(p.relative_to(tiny_run)) for p, t in texts.items() if "numba compiled" in t]
    assert compiled == [], f"jobs compiled kernels the template lacks (extend `aria warm-jit-cache`): {compiled}"
    # Only jobs that imported numba name their cache, and here only because they replaced the
    # NUMBA_CACHE_DIR inherited from the test process (tests/conftest.py); the symbolic jobs never do.
    named = sorted(str(p.relative_to(tiny_run / "results")) for p, t in texts.items() if "private numba cache" in t)
    assert any("audio_features" in n for n in named), named
    assert all("seeded with" in texts[tiny_run / "results" / n] for n in named)
    assert all("replacing the inherited NUMBA_CACHE_DIR" in texts[tiny_run / "results" / n] for n in named)
    assert not [n for n in named if n.startswith("tiny/")], named


def test_cache_note_only_with_v_for_jobs_that_import_numba(tmp_path):
    """Issue 28: every command used to print "aria: private numba cache ... seeded with 58 files",
    even `aria diagnose --json`. Now only a job that imported numba (librosa) says it, with -v."""
    env = {k: v for k, v in _env().items() if k != "NUMBA_CACHE_DIR"}  # a user's shell: nothing inherited
    np.save(tmp_path / "S.npy", np.random.default_rng(0).standard_normal((12, 4)))
    for flags in ([], ["-v"]):
        res = subprocess.run(
            [str(BIN / "aria"), *flags, "diagnose", str(tmp_path / "S.npy"), "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["n_rows"] == 12  # stdout: exactly one JSON object
        assert "numba" not in res.stderr
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(2):
        _tone_wav(audio / f"t{i}.wav", seed=i, sr=44100, dur_s=2.0)  # resampled to 22050 Hz: librosa
    manifest = _manifest(audio, ["t0.wav", "t1.wav"], ["train", "eval"])
    folder = {"manifest": str(manifest), "root": str(audio)}
    params = json.dumps({"kind": "audio_folder", "audio_folder": folder, "sr": 22050})
    notes = {}
    for flags in ([], ["-v"]):
        out = tmp_path / f"manifest{len(flags)}.csv"
        res = subprocess.run(
            [str(BIN / "aria"), "audio-import", "--params", params, "--out", str(out), *flags],
            env=env,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        notes[len(flags)] = [line for line in res.stderr.splitlines() if line.startswith("aria: private numba cache")]
    assert notes[0] == []
    assert len(notes[1]) == 1 and ("seeded with" in notes[1][0] or "no template at" in notes[1][0]), notes


_CRASH_ON = """
import os
target = os.environ.get("ARIA_TEST_CRASH_ON")
if target:
    import aria.runtime as runtime

    _mark = runtime.mark

    def mark(item):
        _mark(item)
        if item.startswith("audio features") and item.endswith(target):
            import ctypes
            ctypes.string_at(0)   # a real SIGSEGV inside native code

    runtime.mark = mark
"""


def test_native_crash_in_a_job_leaves_a_log_that_says_what_to_do(tmp_path):
    """A segfault while extracting one file: the log names the file, the signal and what to try;
    Snakemake's error points to that log; no output is left behind."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(textwrap.dedent(_CRASH_ON))
    folder = tmp_path / "my_audio"
    folder.mkdir()
    for i, name in enumerate(["a", "b", "crash", "q"]):
        _tone_wav(folder / f"{name}.wav", seed=10 + i)
    pd.DataFrame(
        dict(
            track_id=["a", "b", "crash", "q"],
            path=["a.wav", "b.wav", "crash.wav", "q.wav"],
            genre="test",
            split=["train", "train", "train", "eval"],
        )
    ).to_csv(folder / "manifest.csv", index=False)
    cfg = yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())
    cfg["audio"]["corpus"] = {
        "kind": "audio_folder",
        "audio_folder": {"root": str(folder), "manifest": str(folder / "manifest.csv")},
    }
    cfg["homogeneity"]["ks"] = [3]  # 3 training tracks: a larger K is refused at workflow start
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    shard = "results/tiny_audio/evidence/audio_features/shard0.npz"  # rows 0 and 2: a.wav, crash.wav
    res = run_snakemake(
        tmp_path,
        "--cores",
        "1",
        "--show-failed-logs",
        shard,
        check=False,
        env={"PYTHONPATH": str(inject), "ARIA_TEST_CRASH_ON": "crash.wav"},
    )
    assert res.returncode != 0
    log_rel = "results/tiny_audio/logs/audio_features/shard0.log"
    log = (tmp_path / log_rel).read_text()
    assert "Fatal Python error: Segmentation fault" in log  # faulthandler's stack
    assert "died from signal 11 (SIGSEGV" in log
    assert "It was working on: audio features 2/2: " in log and str(folder / "crash.wav") in log
    assert "What to try" in log and "make clean-jit-cache" in log
    out = res.stdout + res.stderr
    assert log_rel in out and "Error in rule audio_features" in out
    assert "What to try" in out  # --show-failed-logs (the default profile sets it) prints the log
    assert not (tmp_path / shard).exists()
    assert not list((tmp_path / "results/tiny_audio/evidence/audio_features").glob("shard0*"))


@pytest.mark.parametrize("signum, expect", [(9, "out-of-memory killer"), (15, "stopped by a signal")])
def test_supervisor_reports_other_signals(capfd, signum, expect):
    """A job killed from outside (the OOM killer's SIGKILL, a scheduler's SIGTERM) says so, with the item."""
    from aria.runtime import supervise

    code = f"from aria.runtime import mark; import os; mark('segments 64..95'); os.kill(os.getpid(), {signum})"
    rc = supervise([sys.executable, "-c", code], command="project")
    text = capfd.readouterr().err
    assert rc == 128 + signum
    assert f"aria project: the process died from signal {signum}" in text
    assert "It was working on: segments 64..95" in text
    assert expect in text


def test_publish_template_replaces_atomically(tmp_path):
    """Publishing over an existing template leaves exactly the new files and no staging folders."""
    from aria.runtime import publish_jit_template

    old, new, target = tmp_path / "old", tmp_path / "new", tmp_path / "var" / "tpl"
    for d, names in ((old, ["x.nbi", "x.1.nbc"]), (new, ["y.nbi"])):
        (d / "sub").mkdir(parents=True)
        for n in names:
            (d / "sub" / n).write_bytes(n.encode())
    publish_jit_template(old, target)
    publish_jit_template(new, target)
    assert sorted(p.name for p in target.rglob("*.nb?")) == ["y.nbi"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["tpl"]


def test_supervisor_sets_malloc_defaults_but_keeps_the_users(tmp_path, monkeypatch):
    """Jobs get the malloc settings (runtime.MALLOC_DEFAULTS); a value the user set wins."""
    from aria.runtime import MALLOC_DEFAULTS, supervise

    monkeypatch.setenv("MALLOC_TOP_PAD_", "12345")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # dask.distributed sets it in its parent
    out = tmp_path / "env.json"
    keys = sorted(MALLOC_DEFAULTS)
    code = f"import json, os; json.dump({{k: os.environ.get(k) for k in {keys!r}}}, open({str(out)!r}, 'w'))"
    assert supervise([sys.executable, "-c", code], command="probe", seed=False) == 0
    import json

    got = json.loads(out.read_text())
    assert got["MALLOC_TOP_PAD_"] == "12345"
    assert got["MALLOC_MMAP_THRESHOLD_"] == MALLOC_DEFAULTS["MALLOC_MMAP_THRESHOLD_"]
    assert got["MALLOC_TRIM_THRESHOLD_"] == MALLOC_DEFAULTS["MALLOC_TRIM_THRESHOLD_"]
