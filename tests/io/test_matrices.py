"""Bring-your-own score matrices: ``aria diagnose`` and ``aria import-scores`` on every format.

References are brute-force numpy (full SVD and ``np.corrcoef``) on the matrix in memory.
"""

import json

import numpy as np
import pytest
import torch
import zarr

from aria.cli import main
from aria.io.matrices import open_matrix
from aria.io.stores import ScoreWriter, open_scores


def brute_force(S):
    S = np.asarray(S, np.float64)
    sv = np.linalg.svd(S, compute_uv=False) ** 2
    n = S.shape[0]
    C = np.corrcoef(S.T)
    iu = np.triu_indices(S.shape[1], 1)
    return {
        "r1": sv[0] / sv.sum(),
        "r2_5": sv[1:5].sum() / sv.sum(),
        "c_bar": float(np.mean(S.sum(0) ** 2 / (n * (S**2).sum(0)))),
        "rho_bar": float(np.abs(C[iu]).mean()),
    }


@pytest.fixture
def S():
    rng = np.random.default_rng(3)
    # a shared direction plus per-query noise: r1 well away from 0 and 1
    return (np.outer(rng.standard_normal(300), rng.uniform(0.5, 1.5, 9)) + rng.standard_normal((300, 9))).astype(
        np.float32
    )


def write_all(tmp_path, S):
    """The matrix in every format; returns {name: (path, transpose flag)}."""
    np.save(tmp_path / "s.npy", S)
    torch.save(torch.from_numpy(S.T.copy()), tmp_path / "s_t.pt")  # test x train, as dattri returns it
    np.savetxt(tmp_path / "s.csv", S, delimiter=",", fmt="%.9g")
    np.savez(tmp_path / "s.npz", scores=S)
    z = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=S.shape, chunks=(64, 9), dtype="f4")
    z[:] = S
    with ScoreWriter(
        tmp_path / "aria.zarr", [f"r{i}" for i in range(len(S))], [f"q{j}" for j in range(9)], row_chunk=50
    ) as w:
        for start in range(0, len(S), 50):
            w.write(start, S[start : start + 50])
    return {
        "npy": ("s.npy", False),
        "pt": ("s_t.pt", True),
        "csv": ("s.csv", False),
        "npz": ("s.npz", False),
        "plain zarr array": ("plain.zarr", False),
        "aria store": ("aria.zarr", False),
    }


def diagnose_json(path, capsys, *extra):
    assert main(["diagnose", str(path), "--json", *extra]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # exactly one JSON object on stdout
    return json.loads(out[0])


def test_diagnose_agrees_with_brute_force_on_every_format(tmp_path, S, capsys):
    ref = brute_force(S)
    for name, (fname, transpose) in write_all(tmp_path, S).items():
        got = diagnose_json(tmp_path / fname, capsys, *(["--transpose"] if transpose else []))
        assert set(got) == {"r1", "r2_5", "c_bar", "rho_bar", "n_rows", "n_cols", "source"}, name
        assert (got["n_rows"], got["n_cols"]) == S.shape, name
        for k, v in ref.items():
            assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-7), (name, k)


def test_zarr_input_is_streamed_not_loaded(tmp_path, S, monkeypatch, capsys):
    """Diagnose reads the zarr store in row chunks (of the store's 64 rows here), each once."""
    import aria.evaluation.reliability as rel

    monkeypatch.setattr(rel, "TARGET_CHUNK_ELEMENTS", 64 * 9)  # as if the matrix were large
    write_all(tmp_path, S)
    m = open_matrix(tmp_path / "plain.zarr")
    seen = []
    orig = type(m.data).__getitem__

    def spy(self, key):
        out = orig(self, key)
        seen.append(np.shape(out))
        return out

    monkeypatch.setattr(type(m.data), "__getitem__", spy)
    diagnose_json(tmp_path / "plain.zarr", capsys)
    assert [s[0] for s in seen] == [64, 64, 64, 64, 44]


def test_diagnose_prints_a_reading(tmp_path, S, capsys):
    np.save(tmp_path / "s.npy", S)
    assert main(["diagnose", str(tmp_path / "s.npy")]) == 0
    out = capsys.readouterr().out
    assert "r1" in out and "rho_bar" in out and "reading:" in out


def ids(path, prefix, n):
    path.write_text("\n".join(f"{prefix}{i}" for i in range(n)) + "\n")
    return path


def test_import_scores_round_trip_and_reorder(tmp_path, S):
    torch.save(torch.from_numpy(S.T.copy()), tmp_path / "s_t.pt")
    rows, cols = ids(tmp_path / "rows.txt", "r", 300), ids(tmp_path / "cols.txt", "q", 9)
    want_cols = tmp_path / "want.txt"
    want_cols.write_text("\n".join(f"q{j}" for j in (8, 0, 3, 1, 2, 4, 5, 6, 7)))
    assert (
        main(
            [
                "import-scores",
                str(tmp_path / "s_t.pt"),
                "--rows",
                str(rows),
                "--cols",
                str(cols),
                "--out",
                str(tmp_path / "out.zarr"),
                "--transpose",
                "--expect-cols",
                str(want_cols),
            ]
        )
        == 0
    )
    arr, r, c = open_scores(tmp_path / "out.zarr")
    assert list(c) == want_cols.read_text().split() and list(r) == [f"r{i}" for i in range(300)]
    np.testing.assert_array_equal(np.asarray(arr[:]), S[:, [8, 0, 3, 1, 2, 4, 5, 6, 7]])


@pytest.mark.parametrize(
    "case, message",
    [
        ("orientation", "pass --transpose"),
        ("row count", "300 rows, but 299 row ids"),
        ("nan", "non-finite"),
        ("extension", "unknown score-matrix format '.txt'"),
        ("empty", "empty score matrix"),
        ("one column", "at least 2"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(tmp_path, S, case, message, capsys):
    rows, cols = ids(tmp_path / "rows.txt", "r", 300), ids(tmp_path / "cols.txt", "q", 9)
    path, extra, cmd = tmp_path / "s.npy", [], "import-scores"
    if case == "orientation":
        np.save(path, S.T)  # stored test x train, no --transpose
    elif case == "row count":
        np.save(path, S)
        rows = ids(tmp_path / "rows.txt", "r", 299)
    elif case == "nan":
        bad = S.copy()
        bad[123, 4] = np.nan
        np.save(path, bad)
    elif case == "extension":
        path = tmp_path / "s.txt"
        np.savetxt(path, S)
    elif case == "empty":
        np.save(path, np.zeros((0, 9), np.float32))
        cmd = "diagnose"
    else:
        np.save(path, S[:, :1])
        cmd = "diagnose"
    args = (
        [cmd, str(path)]
        + (
            ["--rows", str(rows), "--cols", str(cols), "--out", str(tmp_path / "out.zarr")]
            if cmd == "import-scores"
            else []
        )
        + extra
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not (tmp_path / "out.zarr").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.zarr") or "tmp" in p.name]
