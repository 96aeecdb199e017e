"""Chunked zarr stores: projected-gradient features and score matrices.

This module and its siblings in :mod:`aria.io` are the only places where Aria
touches the file system. Everything else works on arrays.

Store layouts (zarr v3 groups)
------------------------------
Every array carries zarr v3 ``dimension_names``, and the id arrays of score and ground-truth
stores are named after their dimension, so ``xarray.open_zarr(path)`` gives a labelled Dataset
whose ids are its index coordinates: a score store has dims ``(segment, query)`` (``(track,
query)`` for track-level and embedding matrices), and ``ds.sel(query="<query id>")`` or
``ds.sel(segment="<segment id>")`` picks by id. A feature store has ``train (segment, k)`` and
``query (query, k)``, its ids ``train_ids``/``query_ids`` named in a ``coordinates`` attribute
(``query`` is taken by the features themselves).

Score store ``scores/<method>.zarr``::

    scores   float32, shape (N, Q), chunks (row_chunk, Q), dims (segment|track, query)
             S[j, q] = how strongly training row j is implicated in query q
    segment  str, shape (N,)   training segment ids, row order (``track`` for track rows)
    query    str, shape (Q,)   query ids, column order
    attrs    {"method": ..., plus method parameters}

Stores written before the ids were index coordinates name them ``row_ids`` and ``col_ids``;
the readers here accept both.

Feature store ``features/<checkpoint>.zarr``::

    train      float32, shape (N, k)   projected training gradients phi(z)
    query      float32, shape (Q, k)   projected query gradients phi(q)
    train_ids  str, shape (N,)
    query_ids  str, shape (Q,)
    attrs      {"k": ..., "seed": ..., "lr": ..., "checkpoint": ...}

Ground-truth store ``lds/<stage>/ground_truth.zarr`` (docs/spec.md §9, :mod:`aria.evaluation.lds`)::

    masks         bool,    shape (M, N)     row m = training segments of subset S_m
    targets       float64, shape (M, Q)     f_q(S_m) = -loss of query q, mean over runs
    target_runs   float64, shape (M, R, Q)  the same per training run
    train_loss    float64, shape (M, R)     mean loss on S_m of each retrained model
    heldout_loss  float64, shape (M, R)     mean loss on the segments outside S_m
    seeds         int64, shape (M, R)       training seed of each run (optional: older stores lack it)
    steps         int64, shape (M, R)       optimizer steps of each run (optional)
    segment_collection  str, shape (N,)     collection (genre) of each segment (optional)
    query_collection    str, shape (Q,)     collection of each query's source track (optional)
    segment       str, shape (N,)           training segment ids (a score store's row ids)
    query         str, shape (Q,)           query ids (a score store's column ids)
    attrs         {"alpha": ..., "seed": ..., "runs": R, "n_subsets": M, "recipe": ..., ...}

Writers build the store under a temporary sibling path and rename it into place
only when complete, so a failed job never leaves a half-written store behind.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr

__all__ = [
    "atomic_dir",
    "atomic_file",
    "open_scores",
    "ScoreWriter",
    "write_features",
    "read_features",
    "read_ids",
    "iter_row_chunks",
    "write_ground_truth",
    "read_ground_truth",
    "read_residual_axis",
    "row_dim",
]

GROUND_TRUTH_ARRAYS = ("masks", "targets", "target_runs", "train_loss", "heldout_loss")
# optional arrays of a ground-truth store: name -> (dtype, dimension names)
GROUND_TRUTH_OPTIONAL = {
    "seeds": ("int64", ("subset", "run")),
    "steps": ("int64", ("subset", "run")),
    "segment_collection": (str, ("segment",)),
    "query_collection": (str, ("query",)),
}

DEFAULT_ROW_CHUNK = 4096


def _no_space(path: Path, e: OSError) -> OSError:
    """A full disk, said plainly: which store, where, and that nothing was left behind."""
    return OSError(
        errno.ENOSPC,
        f"{path}: no space left on device while writing it (in {path.parent}); the partial write "
        "was removed and nothing was written. Free space there (or point the workflow's results "
        "at a larger disk) and run again.",
    )


def _clear_stale(path: Path) -> None:
    """Remove temporary siblings of ``path`` left by an earlier writer that was killed (SIGKILL,
    out of memory, pre-emption): they are never renamed into place, only taking space. One job
    writes one output (Snakemake's lock and DAG), so no live writer owns them.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def fault_point(site: str) -> None:
    """A test hook for the kill -9 tests (tests/workflow/test_faults.py): when the environment
    variable ``ARIA_FAULT_PAUSE`` is ``<site>:<marker path>`` and names this ``site``, write this
    process's pid to the marker and wait (up to 10 min) for the test to kill it mid-write.
    Unset (always, outside those tests) it does nothing.
    """
    spec = os.environ.get("ARIA_FAULT_PAUSE", "")
    if not spec.startswith(site + ":"):
        return
    import time

    marker = Path(spec[len(site) + 1 :])
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, marker)
    time.sleep(600)


@contextlib.contextmanager
def _atomic(path: str | os.PathLike, *, suffix: bool, finish, discard) -> Iterator[Path]:
    """The temporary sibling of ``path`` (``.<name>.tmp-<hex>``, plus ``path``'s suffix if ``suffix``):
    ``finish(tmp, path)`` on success; on any exception ``discard(tmp)``, and ENOSPC names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{path.suffix if suffix else ''}")
    try:
        yield tmp
        finish(tmp, path)
    except BaseException as e:
        discard(tmp)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise _no_space(path, e) from e
        raise


def _replace_dir(tmp: Path, path: Path) -> None:
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(tmp, path)


def _discard_dir(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


def _discard_file(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``path`` on success.

    On any exception the temporary directory is removed and ``path`` is left
    untouched (absent if it was absent); a full disk raises an ``OSError`` (ENOSPC)
    naming ``path``. Temporary siblings left by a killed writer are removed first.
    """
    with _atomic(path, suffix=False, finish=_replace_dir, discard=_discard_dir) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``path`` on success (see :func:`atomic_dir`)."""
    with _atomic(path, suffix=True, finish=os.replace, discard=_discard_file) as tmp:
        yield tmp


def _consolidate(tmp: Path) -> None:
    """Consolidate a finished store's metadata (xarray then opens it in one read, without a warning)."""
    import warnings

    with warnings.catch_warnings():  # zarr: consolidated metadata is not (yet) in the v3 spec
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(tmp))


def _write_ids(group: zarr.Group, name: str, ids, dim: str) -> None:
    ids = np.asarray([str(i) for i in ids], dtype=object)
    arr = group.create_array(name, shape=ids.shape, dtype=str, dimension_names=(dim,))
    if ids.size:
        arr[:] = ids


def read_ids(group_or_path, name: str) -> np.ndarray:
    """Return an id array (``segment``, ``query``, ``train_ids``, ...) as a numpy str array."""
    group = _open_group(group_or_path)
    # zarr 3 returns numpy StringDType, which cannot be cast to a fixed-width str array
    return np.asarray(np.asarray(group[name][:]).tolist(), dtype=str)


# id arrays of stores written before the ids were xarray index coordinates
LEGACY_ID_NAMES = {"row": "row_ids", "query": "col_ids"}


def _axis_ids(group: zarr.Group, dim: str, legacy: str, path) -> np.ndarray:
    """The ids along dimension ``dim``, shape (n,) str: the array named ``dim`` (its xarray
    index coordinate), or ``legacy`` (``row_ids``/``col_ids``) in a store written before that.
    """
    for name in (dim, legacy):
        if name in group:
            return read_ids(group, name)
    raise ValueError(f"{path}: no {dim!r} id array (nor the older {legacy!r}); not a complete Aria store")


def _open_group(group_or_path) -> zarr.Group:
    if isinstance(group_or_path, zarr.Group):
        return group_or_path
    path = Path(group_or_path)
    if not path.exists():
        raise FileNotFoundError(f"zarr store not found: {path}")
    return zarr.open_group(str(path), mode="r")


def _check_finite(block: np.ndarray, start: int, path) -> None:
    """Raise naming ``path`` and the first non-finite entry of a block starting at row ``start``."""
    if not np.isfinite(block).all():
        bad = np.argwhere(~np.isfinite(block))[0]
        raise ValueError(f"{path}: non-finite score at row {start + bad[0]}, column {bad[1]}")


class ScoreWriter:
    """Write an N x Q score matrix row-chunk by row-chunk, atomically.

    Use as a context manager::

        with ScoreWriter(path, row_ids, col_ids, attrs={"method": "trak"}) as w:
            for start, block in blocks:
                w.write(start, block)  # block: (rows, Q)

    The store appears at ``path`` only if the ``with`` block completes and every
    row has been written exactly once. Non-finite values raise immediately.
    """

    def __init__(self, path, row_ids, col_ids, *, attrs=None, row_chunk=DEFAULT_ROW_CHUNK, row_dim="segment"):
        self.path = Path(path)
        if row_dim in ("scores", "query"):  # the row ids are stored under this name
            raise ValueError(f"{self.path}: row_dim {row_dim!r} would clash with the {row_dim!r} array")
        self.row_dim = row_dim  # xarray's name for the rows: segment, or track
        self.row_ids = list(row_ids)
        self.col_ids = list(col_ids)
        self.attrs = dict(attrs or {})
        self.row_chunk = int(row_chunk)
        self._ctx = None
        self._written = 0

    def __enter__(self) -> ScoreWriter:
        self._ctx = atomic_dir(self.path)
        tmp = self._tmp = self._ctx.__enter__()
        group = self._group = zarr.open_group(str(tmp), mode="w")
        n, q = len(self.row_ids), len(self.col_ids)
        self._arr = group.create_array(
            "scores",
            shape=(n, q),
            chunks=(max(1, min(self.row_chunk, n)), max(1, q)),
            dtype="float32",
            dimension_names=(self.row_dim, "query"),
        )
        # named after their dims: xarray's index coordinates, so ds.sel(query=<id>) works
        _write_ids(group, self.row_dim, self.row_ids, self.row_dim)
        _write_ids(group, "query", self.col_ids, "query")
        group.attrs.update(self.attrs)
        return self

    def write(self, start: int, block: np.ndarray) -> None:
        """Write rows ``start .. start + n_rows - 1`` of the matrix.

        Parameters
        ----------
        start : int
            Index of the block's first row.
        block : array, shape (n_rows, Q)
            Scores, stored as float32; a non-finite value raises ValueError naming its row and column.
        """
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != len(self.col_ids):
            raise ValueError(f"{self.path}: score block has shape {block.shape}, expected (rows, {len(self.col_ids)})")
        _check_finite(block, start, self.path)
        self._arr[start : start + block.shape[0]] = block
        self._written += block.shape[0]
        fault_point("scores")

    def store(self, S) -> None:
        """Write a whole lazy (dask) N x Q matrix, its chunks computed and written in parallel
        by the active dask scheduler (rechunked to the store's row chunks first, so that no two
        tasks write into one stored chunk).
        """
        import dask.array as da

        n, q = len(self.row_ids), len(self.col_ids)
        if tuple(S.shape) != (n, q):
            raise ValueError(f"{self.path}: score matrix has shape {S.shape}, expected ({n}, {q})")
        S = S.rechunk((self._arr.chunks[0], q))
        path = self.path

        def checked(block, block_info=None):
            block = np.asarray(block, dtype=np.float32)
            _check_finite(block, block_info[0]["array-location"][0][0], path)
            return block

        da.store(S.map_blocks(checked, dtype=np.float32), self._arr, lock=False)
        self._written += n

    def add_array(self, name: str, values, dims: tuple[str, ...] | None = None) -> None:
        """Store a further array (e.g. a residual's removed axis) in the same group; ``dims``
        names its axes for xarray.
        """
        if name in ("scores", self.row_dim, "query", *LEGACY_ID_NAMES.values()):
            raise ValueError(f"{self.path}: {name!r} is reserved")
        values = np.asarray(values)
        arr = self._group.create_array(name, shape=values.shape, dtype=values.dtype, dimension_names=dims)
        arr[...] = values

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self._written != len(self.row_ids):
            exc = RuntimeError(f"{self.path}: wrote {self._written} score rows, expected {len(self.row_ids)}")
            self._ctx.__exit__(type(exc), exc, None)
            raise exc
        if exc_type is None:
            try:
                _consolidate(self._tmp)
            except BaseException as e:
                self._ctx.__exit__(type(e), e, e.__traceback__)
                raise
        return self._ctx.__exit__(exc_type, exc, tb)


def open_scores(path) -> tuple[zarr.Array, np.ndarray, np.ndarray]:
    """Open a score store read-only: ``(scores, row_ids, col_ids)``.

    ``scores`` is the lazy zarr array, shape (N, Q); nothing is loaded until sliced.
    ``row_ids`` (N,) and ``col_ids`` (Q,) are str arrays (from the ``segment``/``track``
    and ``query`` arrays, or ``row_ids``/``col_ids`` in an older store).
    """
    group = _open_group(path)
    if "scores" not in group:
        raise ValueError(f"{path}: not an Aria score store (no 'scores' array)")
    scores = group["scores"]
    return (
        scores,
        _axis_ids(group, row_dim(scores), LEGACY_ID_NAMES["row"], path),
        _axis_ids(group, "query", LEGACY_ID_NAMES["query"], path),
    )


def store_attrs(path) -> dict:
    """The attributes of a store's group (e.g. a score store's ``method``; unlearning's ``numerics``)."""
    return dict(_open_group(path).attrs)


def row_dim(scores: zarr.Array) -> str:
    """The name of a score array's row dimension (``segment`` or ``track``; ``segment`` for a
    store written before dimension names).
    """
    names = getattr(scores.metadata, "dimension_names", None)
    return str(names[0]) if names and names[0] else "segment"


def read_residual_axis(path) -> dict:
    """The axis removed from a residual store (``aria residual``).

    Returns ``{"u": (N,), "v": (Q,), "sigma1", "r1", "row_ids", "col_ids"}``; u and v
    are the unit singular vectors, float64.
    """
    group = _open_group(path)
    if "axis_u" not in group:
        raise ValueError(f"{path}: not a residual store (no 'axis_u' array)")
    _, row_ids, col_ids = open_scores(path)
    return {
        "u": np.asarray(group["axis_u"][:], dtype=np.float64),
        "v": np.asarray(group["axis_v"][:], dtype=np.float64),
        "sigma1": float(group.attrs["sigma1"]),
        "r1": float(group.attrs["r1_removed"]),
        "row_ids": row_ids,
        "col_ids": col_ids,
    }


def iter_row_chunks(arr, *, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` over row chunks of a 2-D numpy or zarr array.

    For zarr arrays the block size defaults to the store's row chunk, so each
    chunk is read exactly once. (The diagnostics' Gram pass reads and multiplies
    chunks in worker threads: :func:`aria.evaluation.reliability.gram_stats`.)
    """
    n = arr.shape[0]
    if rows is None:
        rows = arr.chunks[0] if hasattr(arr, "chunks") and arr.chunks else max(1, n)
        rows = max(int(rows), 1)
    for start in range(0, n, rows):
        yield start, np.asarray(arr[start : start + rows])


def write_features(path, *, train, query, train_ids, query_ids, attrs=None, row_chunk=DEFAULT_ROW_CHUNK) -> None:
    """Write projected features (see module docstring) atomically.

    ``train`` (N, k) and ``query`` (Q, k) are stored as float32 with their ids ``train_ids``
    (N,) and ``query_ids`` (Q,), and ``attrs`` as group attributes; ``row_chunk`` rows per stored
    chunk. Non-finite values raise ValueError naming the file.
    """
    train = np.asarray(train, dtype=np.float32)
    query = np.asarray(query, dtype=np.float32)
    for name, arr in (("train", train), ("query", query)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{path}: non-finite projected gradients in '{name}'")
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        for name, arr, dim in (("train", train, "segment"), ("query", query, "query")):
            group.create_array(
                name,
                shape=arr.shape,
                dtype="float32",
                chunks=(max(1, min(row_chunk, arr.shape[0])), max(1, arr.shape[1])),
                dimension_names=(dim, "k"),
                attributes={"coordinates": f"{name}_ids"},
            )[:] = arr
            fault_point("features")
        _write_ids(group, "train_ids", train_ids, "segment")
        _write_ids(group, "query_ids", query_ids, "query")
        group.attrs.update(dict(attrs or {}))
        _consolidate(tmp)


def read_features(path, *, lazy: bool = False, row_chunk: int | None = None) -> dict:
    """Read a feature store: dict with train, query, ids and attrs.

    Features are N x k with k in the hundreds to thousands, so they are small
    next to the N x Q score matrices and are loaded whole; ``lazy=True`` gives
    ``train`` as a dask array over the store's chunks instead (rows per chunk:
    ``row_chunk``, default the store's), for the dask engine.
    """
    group = _open_group(path)
    if lazy:
        import dask.array as da

        arr = group["train"]
        train = da.from_zarr(arr, chunks=(row_chunk or arr.chunks[0], arr.shape[1]))
    else:
        train = np.asarray(group["train"][:])
    return {
        "train": train,
        "query": np.asarray(group["query"][:]),
        "train_ids": read_ids(group, "train_ids"),
        "query_ids": read_ids(group, "query_ids"),
        "attrs": dict(group.attrs),
    }


def write_ground_truth(path, *, row_ids, col_ids, attrs=None, **arrays) -> None:
    """Write a ground-truth store (see module docstring) atomically.

    ``arrays`` are :data:`GROUND_TRUTH_ARRAYS` plus any of :data:`GROUND_TRUTH_OPTIONAL`
    (None = left out); shapes are checked against the ids.
    """
    opt = {k: arrays.pop(k) for k in list(arrays) if k in GROUND_TRUTH_OPTIONAL}
    missing = sorted(set(GROUND_TRUTH_ARRAYS) - set(arrays))
    if missing or set(arrays) - set(GROUND_TRUTH_ARRAYS):
        raise ValueError(
            f"{path}: ground truth needs arrays {GROUND_TRUTH_ARRAYS} (optional {sorted(GROUND_TRUTH_OPTIONAL)}), "
            f"got {sorted(arrays) + sorted(opt)}"
        )
    masks, targets = np.asarray(arrays["masks"], dtype=bool), np.asarray(arrays["targets"], dtype=np.float64)
    n_sub, n, q = masks.shape[0], len(row_ids), len(col_ids)
    if masks.shape != (n_sub, n) or targets.shape != (n_sub, q):
        raise ValueError(f"{path}: masks {masks.shape} / targets {targets.shape} do not fit {n} rows x {q} queries")
    if not np.isfinite(targets).all():
        raise ValueError(f"{path}: non-finite retraining targets")
    sizes = {"subset": n_sub, "segment": n, "query": q, "run": np.shape(arrays["target_runs"])[1]}
    for name, value in opt.items():
        if value is not None and np.shape(value) != tuple(sizes[d] for d in GROUND_TRUTH_OPTIONAL[name][1]):
            raise ValueError(f"{path}: {name} has shape {np.shape(value)}, not {GROUND_TRUTH_OPTIONAL[name][1]}")
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        dims = {
            "masks": ("subset", "segment"),
            "targets": ("subset", "query"),
            "target_runs": ("subset", "run", "query"),
            "train_loss": ("subset", "run"),
            "heldout_loss": ("subset", "run"),
        }
        for name in GROUND_TRUTH_ARRAYS:
            arr = np.asarray(arrays[name], dtype=bool if name == "masks" else np.float64)
            group.create_array(name, shape=arr.shape, dtype=arr.dtype, dimension_names=dims[name])[...] = arr
        for name, value in opt.items():
            dtype, dim = GROUND_TRUTH_OPTIONAL[name]
            if value is None:
                continue
            if dtype is str:
                _write_ids(group, name, value, dim[0])
            else:
                arr = np.asarray(value, dtype=dtype)
                group.create_array(name, shape=arr.shape, dtype=arr.dtype, dimension_names=dim)[...] = arr
        _write_ids(group, "segment", row_ids, "segment")
        _write_ids(group, "query", col_ids, "query")
        group.attrs.update(dict(attrs or {}))
        _consolidate(tmp)


def read_ground_truth(path) -> dict:
    """Read a ground-truth store: its arrays, ``row_ids``, ``col_ids`` and ``attrs``.

    Masks and targets are M x N and M x Q with M in the tens, so they are loaded whole. The
    optional arrays (:data:`GROUND_TRUTH_OPTIONAL`) are None where the store lacks them.
    """
    group = _open_group(path)
    missing = [n for n in GROUND_TRUTH_ARRAYS if n not in group]
    if missing:
        raise ValueError(f"{path}: not an Aria ground-truth store (missing {missing})")
    out = {n: np.asarray(group[n][...]) for n in GROUND_TRUTH_ARRAYS}
    for name, (dtype, _) in GROUND_TRUTH_OPTIONAL.items():
        if name not in group:
            out[name] = None
        else:
            out[name] = read_ids(group, name) if dtype is str else np.asarray(group[name][...])
    out.update(
        row_ids=_axis_ids(group, "segment", LEGACY_ID_NAMES["row"], path),
        col_ids=_axis_ids(group, "query", LEGACY_ID_NAMES["query"], path),
        attrs=dict(group.attrs),
    )
    return out
