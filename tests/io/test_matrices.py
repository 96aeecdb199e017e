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
    """Diagnose reads the zarr store in row chunks (of the store's 64 rows here), each once.

    Chunks are read by a thread pool, so the order of the reads is not fixed; which
    row ranges were read, and how often, is."""
    import aria.evaluation.reliability as rel

    monkeypatch.setattr(rel, "TARGET_CHUNK_ELEMENTS", 64 * 9)  # as if the matrix were large
    write_all(tmp_path, S)
    m = open_matrix(tmp_path / "plain.zarr")
    seen = []
    orig = type(m.data).__getitem__

    def spy(self, key):
        out = orig(self, key)
        rows = key[0] if isinstance(key, tuple) else key
        seen.append((rows.start, np.shape(out)[0]))
        return out

    monkeypatch.setattr(type(m.data), "__getitem__", spy)
    diagnose_json(tmp_path / "plain.zarr", capsys)
    assert sorted(seen) == [(0, 64), (64, 64), (128, 64), (192, 64), (256, 44)]


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


def _csv_with(tmp_path, S, cell, *, ids=False):
    """S as CSV with the entry at (row 123, column 4) replaced by the text ``cell``; with ``ids``
    a header row ``id,c0..c8`` and a first column ``r0..r299``."""
    text = [[f"{v:.9g}" for v in row] for row in S]
    text[123][4] = cell
    lines = [",".join(r) for r in text]
    if ids:
        lines = ["id," + ",".join(f"c{j}" for j in range(S.shape[1]))] + [f"r{i},{x}" for i, x in enumerate(lines)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "s.csv"


def _npy_with_nan(tmp_path, S):
    bad = S.copy()
    bad[123, 4] = np.nan
    np.save(tmp_path / "s.npy", bad)
    return tmp_path / "s.npy"


def _truncated_npy(tmp_path, S):
    np.save(tmp_path / "full.npy", S)
    data = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "s.npy").write_bytes(data[:1000])
    header = len(data) - S.nbytes  # the .npy header is what the file holds besides the data
    return tmp_path / "s.npy", (
        f"truncated .npy file: its header declares shape {S.shape} float32, {S.nbytes} data bytes, "
        f"but only {1000 - header} are present (cut short?)"
    )


# each: (make the file, what must follow "aria diagnose: error: <the path given>: ")
DIAGNOSE_BAD_FILES = {
    "NaN in a .npy": (_npy_with_nan, "non-finite score (nan) at row 123, column 4"),
    # stored transposed (queries x training items), read with --transpose: named as read
    "NaN in a .npy, --transpose": (_npy_with_nan, "non-finite score (nan) at row 123, column 4"),
    "NaN in a CSV": (lambda t, S: _csv_with(t, S, "nan"), "non-finite score (nan) at row 123, column 4"),
    "NaN spelled NaN, with ids": (
        lambda t, S: _csv_with(t, S, "NaN", ids=True),
        "non-finite score (nan) at row 123, column 4",
    ),
    "NA (R's missing value)": (lambda t, S: _csv_with(t, S, "NA"), "non-finite score (nan) at row 123, column 4"),
    "Inf in a CSV": (lambda t, S: _csv_with(t, S, "-inf"), "non-finite score (-inf) at row 123, column 4"),
    "text in a CSV": (
        lambda t, S: _csv_with(t, S, "n.a.", ids=True),
        "non-numeric entry 'n.a.' at row 123 ('r123'), column 4 ('c4') of the matrix (1 such cell(s))",
    ),
    "empty CSV cell": (lambda t, S: _csv_with(t, S, " "), "empty cell at row 123, column 4 of the matrix"),
    "ragged CSV": (
        lambda t, S: _csv_with(t, S, "1,2"),
        "unreadable CSV (Error tokenizing data. C error: Expected 9 fields in line 124, saw 10)",
    ),
    "zero-byte .npy": (lambda t, S: _write(t / "s.npy", b""), "zero-length file (0 bytes)"),
    "zero-byte .pt": (lambda t, S: _write(t / "s.pt", b""), "zero-length file (0 bytes)"),
    "zero-byte .csv": (lambda t, S: _write(t / "s.csv", b""), "zero-length file (0 bytes)"),
    "text saved as .npy": (
        lambda t, S: _write(t / "s.npy", b"0.1 0.2\n0.3 0.4\n"),
        "not a .npy file (it does not start with numpy's .npy header)",
    ),
    "text saved as .npz": (
        lambda t, S: _write(t / "s.npz", b"0.1 0.2\n"),
        "not a .npz file (not a zip archive as numpy.savez writes)",
    ),
    "object .npy": (
        lambda t, S: _save(t / "s.npy", np.array([[1.0, None], [None, 2.0]], dtype=object)),
        "holds Python objects (dtype object), not numbers",
    ),
    "string .npy": (
        lambda t, S: _save(t / "s.npy", S.astype(str)),
        "score matrix must hold real numbers, got dtype <U",
    ),
}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _save(path, arr):
    np.save(path, arr, allow_pickle=True)
    return path


@pytest.mark.parametrize("case", list(DIAGNOSE_BAD_FILES) + ["truncated .npy"])
def test_diagnose_names_the_file_given_and_the_problem(tmp_path, S, case, capsys, monkeypatch):
    """Every diagnose error starts with the path as the user gave it (relative here, as typed),
    never with "array:", and names the problem (a NaN as NaN, not as an unparsable string)."""
    if case == "truncated .npy":
        path, message = _truncated_npy(tmp_path, S)
    else:
        make, message = DIAGNOSE_BAD_FILES[case]
        path = make(tmp_path, S)
    monkeypatch.chdir(tmp_path)
    extra = ["--transpose"] if "--transpose" in case else []
    if "--transpose" in case:
        np.save(path, np.load(path).T)  # stored queries x training items
    assert main(["diagnose", path.name, "--json", *extra]) == 2
    err = capsys.readouterr().err
    assert f"aria diagnose: error: {path.name}: {message}" in err, err
    assert "array:" not in err


def test_nan_in_a_csv_is_rejected_by_import_scores_as_nan(tmp_path, S, capsys):
    path = _csv_with(tmp_path, S, "NaN")
    rows, cols = ids(tmp_path / "rows.txt", "r", 300), ids(tmp_path / "cols.txt", "q", 9)
    args = ["import-scores", str(path), "--rows", str(rows), "--cols", str(cols), "--out", str(tmp_path / "o.zarr")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{path}: 1 non-finite value(s) (NaN/Inf) in rows 0..299; first at row 'r123', column 'q4': nan" in err
    assert not (tmp_path / "o.zarr").exists()


def test_csv_reads_nan_spellings_as_nan_and_numbers_as_numbers(tmp_path, S):
    """The CSV reader against numpy's own parse: every NaN spelling becomes NaN, the rest the numbers."""
    text = [[f"{v:.9g}" for v in row] for row in S[:6]]
    spellings = ["nan", "NaN", "-nan", "NA", "n/a", "#N/A", "null", " nan "]
    for k, cell in enumerate(spellings):
        text[k % 6][k % 9] = cell
    (tmp_path / "m.csv").write_text("\n".join(",".join(r) for r in text) + "\n")
    got = open_matrix(tmp_path / "m.csv").data
    want = np.array(
        [[float(c) if c.strip().lower() not in {"na", "n/a", "#n/a", "null"} else np.nan for c in r] for r in text]
    )
    np.testing.assert_array_equal(got, want)  # NaN positions equal, the numbers equal
    assert int(np.isnan(got).sum()) == len(spellings)
