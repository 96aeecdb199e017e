"""Score matrices in the formats users bring: one reader for all of them.

Orientation convention (everywhere in Aria): rows are training items (segments
or tracks, N), columns are queries (Q); larger means more implicated.
``transpose=True`` reads a matrix stored the other way round (Q x N). dattri's
``attribute`` returns (num_train, num_test), Aria's orientation: no transpose.

Formats (:data:`FORMATS`, chosen by the path's extension)
---------------------------------------------------------
``.zarr`` directory  an Aria score store (group with ``scores``, ``row_ids``,
                     ``col_ids``) or a plain 2-D zarr array; read lazily, chunk by chunk
``.npy``             memory-mapped, never loaded whole
``.npz``             the array ``scores``, or the only array in the file
``.pt`` / ``.pth``   a tensor saved with ``torch.save`` (or a dict holding one
                     tensor under ``scores``); loaded with ``weights_only=True``
``.csv``             numbers only, or a header row of column ids plus a first
                     column of row ids; ``nan``, ``NA``, ``N/A``, ``#N/A`` and ``null``
                     (any case) are read as NaN, which the commands then reject as
                     non-finite, and any other text is an error naming the cell

Every error names the file as given; a zero-byte file, a file that is not of its
extension's format and a cut-short ``.npy`` are said as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMATS", "EXPORT_FORMATS", "Matrix", "open_matrix", "check_matrix", "write_exported"]

# aria export-scores --to -> the file extensions it writes: dattri's format (a float32 tensor,
# train x test, saved with torch.save), or numpy's .npy; both with the ids beside them as
# <out>.rows.txt / .cols.txt
EXPORT_FORMATS = {"dattri": (".pt", ".pth"), "npy": (".npy",)}

FORMATS = (".zarr", ".npy", ".npz", ".pt", ".pth", ".csv")


@dataclass
class Matrix:
    """A score matrix opened for reading.

    ``data`` is 2-D, rows = training items, columns = queries: a lazy zarr
    array, a memory-mapped or in-memory ndarray, or a transposed view of one.
    ``row_ids`` / ``col_ids`` are the ids the file itself carries (None when it
    has none). ``source`` names the file for messages.
    """

    data: Any
    row_ids: np.ndarray | None
    col_ids: np.ndarray | None
    source: str

    @property
    def shape(self) -> tuple[int, int]:
        """(n_rows, n_cols) of ``data``: (N training items, Q queries)."""
        return tuple(int(s) for s in self.data.shape)


class _Transposed:
    """Lazy transpose of a 2-D array-like: slicing rows reads columns of the original."""

    def __init__(self, arr):
        self._arr = arr
        self.shape = tuple(arr.shape)[::-1]
        self.dtype = arr.dtype
        ch = getattr(arr, "chunks", None)
        self.chunks = tuple(ch)[::-1] if ch else None

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key, slice(None))
        return np.asarray(self._arr[key[::-1]]).T


def _zarr(path: Path):
    import zarr

    from aria.io.stores import open_scores

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:  # noqa: BLE001 - zarr raises several types for a non-store
        raise ValueError(f"{path}: not a readable zarr store ({type(e).__name__}: {e})") from e
    if isinstance(node, zarr.Array):
        return node, None, None
    if "scores" in node:
        return open_scores(path)
    arrays = [k for k, v in node.members() if isinstance(v, zarr.Array) and len(v.shape) == 2]
    raise ValueError(
        f"{path}: zarr group without a 'scores' array (2-D arrays in it: {arrays or 'none'}); "
        "pass the array's own path, e.g. store.zarr/<name>"
    )


def _npy(path: Path):
    """A ``.npy`` file, memory-mapped, its header checked first so that a file that is not one,
    holds Python objects or is cut short is said so, naming ``path``.
    """
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
        except ValueError:
            raise ValueError(f"{path}: not a .npy file (it does not start with numpy's .npy header)") from None
        try:
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except ValueError as e:
            raise ValueError(f"{path}: unreadable .npy header ({e})") from None
        data_start = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: holds Python objects (dtype {dtype}), not numbers; save a numeric array")
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size - data_start
    if have < need:
        raise ValueError(
            f"{path}: truncated .npy file: its header declares shape {tuple(shape)} {dtype}, "
            f"{need} data bytes, but only {have} are present (cut short?)"
        )
    return np.load(path, mmap_mode="r", allow_pickle=False), None, None


def _npz(path: Path):
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz file (not a zip archive as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if "scores" in keys:
                key = "scores"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise ValueError(f"{path}: .npz holds {keys}; name the matrix 'scores' or save only it")
            arr = z[key]
            rows = z["row_ids"].astype(str) if "row_ids" in keys else None
            cols = z["col_ids"].astype(str) if "col_ids" in keys else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if str(e).startswith(f"{path}:"):
            raise
        raise ValueError(f"{path}: unreadable .npz file ({type(e).__name__}: {e})") from e
    return arr, rows, cols


def _torch(path: Path):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle errors of many kinds
        raise ValueError(
            f"{path}: not a tensor file readable with torch.load(weights_only=True) ({type(e).__name__}: {e})"
        ) from e
    if isinstance(obj, dict):
        if "scores" not in obj:
            raise ValueError(f"{path}: a dict with keys {sorted(obj)}; store the matrix under 'scores'")
        obj = obj["scores"]
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a tensor")
    return obj.detach().to(torch.float64 if obj.dtype == torch.float64 else torch.float32).numpy(), None, None


# CSV cells read as NaN (and then reported as non-finite scores by the commands), compared
# lowercased: Python's and numpy's spellings, and the missing-value markers of R and spreadsheets
CSV_NAN_TEXT = frozenset({"nan", "+nan", "-nan", "na", "n/a", "#n/a", "null"})


def _csv(path: Path):
    import pandas as pd

    try:
        df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty CSV") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable CSV ({' '.join(str(e).split())})") from None
    if df.empty:
        raise ValueError(f"{path}: empty CSV")

    def numeric(x):  # every cell a number or a NaN spelling (a first row with a NaN is data, not a header)
        x = pd.Series(x).str.strip()
        return (pd.to_numeric(x, errors="coerce").notna() | x.str.lower().isin(CSV_NAN_TEXT)).all()

    has_header = not numeric(df.iloc[0, 1:]) or (df.shape[1] == 1 and not numeric(df.iloc[0]))
    has_index = not numeric(df.iloc[1 if has_header else 0 :, 0])
    cols = np.asarray(df.iloc[0, 1 if has_index else 0 :], dtype=str) if has_header else None
    body = df.iloc[1 if has_header else 0 :, 1 if has_index else 0 :]
    rows = np.asarray(df.iloc[1 if has_header else 0 :, 0], dtype=str) if has_index else None
    text = body.apply(lambda c: c.str.strip())
    arr = text.apply(lambda c: pd.to_numeric(c, errors="coerce")).to_numpy(np.float64)
    nan_text = text.apply(lambda c: c.str.lower().isin(CSV_NAN_TEXT)).to_numpy(bool)
    unparsed = np.isnan(arr) & ~nan_text
    if unparsed.any():
        i, j = (int(x) for x in np.argwhere(unparsed)[0])
        cell = text.iat[i, j]
        at = f"row {i}" + (f" ({str(rows[i])!r})" if rows is not None else "")
        at += f", column {j}" + (f" ({str(cols[j])!r})" if cols is not None else "")
        what = "empty cell" if cell == "" else f"non-numeric entry {cell!r}"
        raise ValueError(
            f"{path}: {what} at {at} of the matrix ({int(unparsed.sum())} such cell(s)); every cell must hold a number"
        )
    return arr, rows, cols


def open_matrix(path_or_array, *, transpose: bool = False) -> Matrix:
    """Open a score matrix from a file (any of :data:`FORMATS`) or wrap an array.

    Parameters
    ----------
    path_or_array : str, os.PathLike, zarr array or array_like
        A file, or an array already in memory / a lazy zarr array.
    transpose : bool, keyword-only
        The file stores queries as rows (Q x N); read it as N x Q.

    Returns
    -------
    Matrix
        Nothing is loaded for zarr and ``.npy`` inputs until sliced.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, unknown extension, unreadable content, not 2-D; the
        message names the file.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        path = Path(path_or_array)
        ext = path.suffix.lower()
        if ext not in FORMATS:
            raise ValueError(
                f"{path}: unknown score-matrix format {ext or '(no extension)'!r}; expected one of {', '.join(FORMATS)}"
            )
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or store")
        if ext != ".zarr" and path.is_dir():
            raise ValueError(f"{path}: is a directory, not a {ext} file")
        if ext != ".zarr" and path.stat().st_size == 0:
            raise ValueError(f"{path}: zero-length file (0 bytes)")
        if ext == ".zarr":
            arr, rows, cols = _zarr(path)
        elif ext == ".npy":
            arr, rows, cols = _npy(path)
        elif ext == ".npz":
            arr, rows, cols = _npz(path)
        elif ext in (".pt", ".pth"):
            arr, rows, cols = _torch(path)
        else:
            arr, rows, cols = _csv(path)
        source = str(path)
    else:
        arr, rows, cols, source = path_or_array, None, None, "array"
        if not (hasattr(arr, "shape") and hasattr(arr, "__getitem__")):
            arr = np.asarray(arr)
        else:
            store = getattr(arr, "store", None)
            root = getattr(store, "root", None)
            if root is not None:
                source = str(Path(str(root)) / (getattr(arr, "path", "") or ""))
    if len(arr.shape) != 2:
        raise ValueError(f"{source}: score matrix must be 2-D, got shape {tuple(arr.shape)}")
    if transpose:
        arr = arr.T if isinstance(arr, np.ndarray) else _Transposed(arr)
        rows, cols = cols, rows
    return Matrix(arr, rows, cols, source)


def check_matrix(m: Matrix, *, row_ids=None, col_ids=None, min_cols: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Check shape and ids of a matrix against the expected id lists; return ``(row_ids, col_ids)``.

    ``row_ids``/``col_ids`` (the training items and queries the matrix must
    cover) win over ids carried by the file, which must then agree. Without
    either, ids are ``0..N-1`` / ``0..Q-1`` as strings.

    Raises
    ------
    ValueError
        Empty matrix, entries that are not real numbers, fewer than ``min_cols``
        columns (correlations across queries are undefined for one), an id count
        that does not match, or
        ids that disagree with the file's own. When the counts fit the
        transposed matrix the message says to pass ``--transpose``.
    """
    n, q = m.shape
    if n == 0 or q == 0:
        raise ValueError(f"{m.source}: empty score matrix, shape {(n, q)}")
    dtype = np.dtype(getattr(m.data, "dtype", np.float64))
    if dtype.kind not in "biuf":
        raise ValueError(f"{m.source}: score matrix must hold real numbers, got dtype {dtype}")
    rows = None if row_ids is None else np.asarray(row_ids).astype(str)
    cols = None if col_ids is None else np.asarray(col_ids).astype(str)
    if rows is not None and cols is not None and (len(rows), len(cols)) != (n, q) and (len(rows), len(cols)) == (q, n):
        raise ValueError(
            f"{m.source}: shape {(n, q)} is the transpose of the id lists "
            f"({len(rows)} rows x {len(cols)} columns): the file stores queries as rows; "
            "pass --transpose (config: transpose: true)"
        )
    for what, ids, have, size in (("row", rows, m.row_ids, n), ("column", cols, m.col_ids, q)):
        if ids is not None and len(ids) != size:
            raise ValueError(f"{m.source}: {size} {what}s, but {len(ids)} {what} ids were given")
        if ids is not None and have is not None and not np.array_equal(ids, np.asarray(have).astype(str)):
            raise ValueError(f"{m.source}: its own {what} ids differ from the {what} ids given")
    if q < min_cols:
        raise ValueError(
            f"{m.source}: {q} query column(s); the diagnostics need at least {min_cols} "
            "(correlations between queries are undefined for one)"
        )
    rows = (
        rows
        if rows is not None
        else (np.asarray(m.row_ids).astype(str) if m.row_ids is not None else np.arange(n).astype(str))
    )
    cols = (
        cols
        if cols is not None
        else (np.asarray(m.col_ids).astype(str) if m.col_ids is not None else np.arange(q).astype(str))
    )
    return rows, cols


def take_rows(data, idx) -> np.ndarray:
    """Rows ``idx`` (sorted or not) of a 2-D array-like as an ndarray, reading only those rows."""
    idx = np.asarray(idx)
    if isinstance(data, np.ndarray):
        return np.asarray(data[idx])
    if isinstance(data, _Transposed):
        inner = data._arr
        cols = inner.oindex[:, idx] if hasattr(inner, "oindex") else np.asarray(inner)[:, idx]
        return np.asarray(cols).T
    if hasattr(data, "oindex"):
        return np.asarray(data.oindex[idx, :])
    return np.asarray(data)[idx]


def align(ids, expected, *, what: str, source: str) -> np.ndarray:
    """Index ``p`` with ``ids[p] == expected``: the file's order mapped onto the workflow's.

    ``ids`` (n,) are the file's ids, ``expected`` (n,) the workflow's (compared as str); returns
    an int64 array of shape (n,). Raises ValueError naming ids missing from the file or not in
    the workflow (``what``: "row" or "column", for messages; ``source``: the file).
    """
    ids = np.asarray(ids).astype(str)
    expected = np.asarray(expected).astype(str)
    where = {v: i for i, v in enumerate(ids)}
    missing = [v for v in expected if v not in where]
    extra = sorted(set(ids) - set(expected))
    if missing or extra:
        raise ValueError(
            f"{source}: its {what} ids do not match the workflow's {len(expected)} {what}s "
            f"({len(missing)} missing, e.g. {missing[:3]}; {len(extra)} unknown, e.g. {extra[:3]})"
        )
    return np.array([where[v] for v in expected], dtype=np.int64)


def id_sidecars(out) -> tuple[Path, Path]:
    """The id lists written beside an exported matrix: ``<out>.rows.txt``, ``<out>.cols.txt``."""
    out = Path(out)
    return out.with_name(out.name + ".rows.txt"), out.with_name(out.name + ".cols.txt")


def write_exported(out, blocks, *, shape, row_ids, col_ids, to: str) -> list[Path]:
    """Write an N x Q matrix given as ``(start, block)`` row blocks in an exchange format.

    Parameters
    ----------
    out : path
        ``.pt`` for ``to="dattri"`` (a float32 tensor of shape (N, Q), dattri's
        ``(num_train_samples, num_test_samples)``), ``.npy`` for ``to="npy"`` (written
        through a memory map, so it never holds the matrix twice).
    blocks : iterable of (int, ndarray of shape (rows, Q))
    shape : (int, int)
    row_ids, col_ids : sequences of str, lengths N and Q
    to : {"dattri", "npy"}

    Returns
    -------
    list of Path
        The matrix and its two id lists (see :func:`id_sidecars`), each written atomically.
    """
    from aria.io.stores import atomic_file

    out = Path(out)
    if to not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {to!r}; choose one of {tuple(EXPORT_FORMATS)}")
    if out.suffix not in EXPORT_FORMATS[to]:
        raise ValueError(f"{out}: --to {to} writes a {' or '.join(EXPORT_FORMATS[to])} file")
    n, q = shape
    if len(row_ids) != n or len(col_ids) != q:
        raise ValueError(f"{out}: {len(row_ids)} row ids / {len(col_ids)} column ids for a {n} x {q} matrix")
    with atomic_file(out) as tmp:
        if to == "npy":
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, q))
            for start, block in blocks:
                mm[start : start + len(block)] = block
            mm.flush()
            del mm
        else:
            import torch

            full = np.empty((n, q), dtype=np.float32)  # dattri's format is one in-memory tensor
            for start, block in blocks:
                full[start : start + len(block)] = block
            torch.save(torch.from_numpy(full), tmp)
    paths = [out]
    for path, ids in zip(id_sidecars(out), (row_ids, col_ids)):
        with atomic_file(path) as tmp:
            tmp.write_text("".join(f"{i}\n" for i in ids))
        paths.append(path)
    return paths
