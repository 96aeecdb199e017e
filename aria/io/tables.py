"""Small files: CSV manifests, JSON documents, npz bundles and torch checkpoints.

Every writer goes through :func:`aria.io.stores.atomic_file`, so a failed job
leaves nothing half-written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aria.io.stores import atomic_file
from aria.messages import and_more, some

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "write_csv",
    "read_csv",
    "write_json",
    "read_json",
    "write_npz",
    "read_npz",
    "save_torch",
    "load_torch",
    "read_manifest",
    "read_benchmark",
    "disk_usage",
    "DROPPED_COLUMNS",
    "write_dropped",
    "read_dropped",
]


def write_csv(path, df: pd.DataFrame) -> None:
    """Write ``df`` to ``path`` as CSV without the index, atomically."""
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)


def read_csv(path) -> pd.DataFrame:
    """Read a CSV table, keeping ``track_id``, ``segment_id`` and ``query_id`` as strings.

    Raises FileNotFoundError naming ``path`` when it does not exist.
    """
    import pandas as pd  # lazily: most jobs never read a table

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table not found: {path}")
    return pd.read_csv(path, dtype={"track_id": str, "segment_id": str, "query_id": str})


def _slug(title: str) -> str:
    import re
    import unicodedata

    ascii_ = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_.lower()).strip("_")[:60] or "item"


def write_report_assets(figures_dir, tables_dir, *, figures: dict, tables: dict) -> None:
    """A report's figures as ``NN_<slug>.png`` and its tables as ``NN_<slug>.csv`` (numbered in
    report order; the title is the CSV's first comment line), each folder written atomically;
    a folder given as None is not written.
    """
    import csv
    import io

    from aria.io.stores import atomic_dir

    if figures_dir is not None:
        with atomic_dir(figures_dir) as tmp:
            tmp.mkdir()
            for i, (title, png) in enumerate(figures.items(), 1):
                (tmp / f"{i:02d}_{_slug(title)}.png").write_bytes(png)
    if tables_dir is None:
        return
    with atomic_dir(tables_dir) as tmp:
        tmp.mkdir()
        for i, (title, (header, rows)) in enumerate(tables.items(), 1):
            buf = io.StringIO()
            buf.write(f"# {title}\n")
            w = csv.writer(buf)
            w.writerow(header)
            w.writerows(rows)
            (tmp / f"{i:02d}_{_slug(title)}.csv").write_text(buf.getvalue(), encoding="utf-8")


def read_omnizart_chords(path) -> list[dict]:
    """Omnizart's chord CSV (header ``chord,start,end``, seconds) as a list of row dicts."""
    import csv

    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"chord", "start", "end"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: not an Omnizart chord CSV (expected columns chord,start,end, got {reader.fieldnames})"
            )
        rows = []
        for i, r in enumerate(reader, 2):
            try:
                rows.append({"chord": r["chord"], "start": float(r["start"]), "end": float(r["end"])})
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: line {i}: {e}") from e
    return rows


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically; numpy scalars and arrays become numbers and lists."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def read_json(path):
    """The JSON document at ``path``."""
    return json.loads(Path(path).read_text())


def write_npz(path, **arrays) -> None:
    """Save ``arrays`` (name -> array) uncompressed with ``np.savez``, atomically."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, loaded into memory (no pickled objects allowed)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_torch(path, obj) -> None:
    """Save ``obj`` (a checkpoint dict, a tensor...) with ``torch.save``, atomically."""
    import torch

    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path):
    """Load a checkpoint written by :func:`save_torch` (or a user's own, same format)."""
    import torch

    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure: name the file
        raise ValueError(f"{path}: cannot load checkpoint: {type(e).__name__}: {e}") from e


MANIFEST_COLUMNS = ("track_id", "path", "genre", "split")


def read_manifest(path, *, root=None, check_files: bool = True) -> pd.DataFrame:
    """Read and check a corpus manifest (CSV).

    Required columns: track_id, path, genre, split (``train`` or ``eval``).
    ``path`` is resolved against ``root`` (default: the manifest's folder) into
    an absolute ``abspath`` column. ``check_files=False`` skips the check that
    every file exists (for readers that need only the ids and splits).

    Raises
    ------
    ValueError
        Naming the manifest and the offending rows: missing columns, duplicate
        track ids, unknown split values, or files that do not exist.
    """
    import pandas as pd  # lazily: most jobs never read a table

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus manifest not found: {path}")
    df = pd.read_csv(path, dtype=str)
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; required: {list(MANIFEST_COLUMNS)}")
    dup = df["track_id"][df["track_id"].duplicated()].unique()
    if len(dup):
        raise ValueError(f"{path}: duplicate track_id(s) {some(dup)}")
    bad = df.loc[~df["split"].isin(["train", "eval"]), "track_id"]
    if len(bad):
        raise ValueError(f"{path}: split must be 'train' or 'eval'; bad rows for track_id(s) {some(bad)}")
    empty = df.loc[df["path"].isna() | df["track_id"].isna(), "track_id"]
    if len(empty):
        raise ValueError(f"{path}: empty track_id or path in row(s) for track_id(s) {some(empty)}")
    base = Path(root) if root is not None else path.parent
    df["abspath"] = [str((base / p).resolve()) for p in df["path"]]
    gone = [(t, p) for t, p in zip(df["track_id"], df["abspath"]) if check_files and not Path(p).is_file()]
    if gone:
        lines = ", ".join(f"{t} -> {p}" for t, p in gone[:5]) + and_more(len(gone), 5)
        raise ValueError(f"{path}: {len(gone)} file(s) named in the manifest do not exist: {lines}")
    return df


def read_id_list(path) -> np.ndarray:
    """Ids, one per line (a ``.txt`` file), or the first column of a ``.csv`` with a header row.

    Also reads the ``segment_ids``/``track_ids``/``query_ids`` of an ``.npz`` layout of
    Aria (training segments, queries). Blank lines are ignored; duplicates are an error.
    """
    import pandas as pd  # lazily: most jobs never read a table

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"id list not found: {path}")
    if path.suffix == ".npz":
        d = read_npz(path)
        key = next((k for k in ("segment_ids", "query_ids", "track_ids") if k in d), None)
        if key is None:
            raise ValueError(f"{path}: no segment_ids, query_ids or track_ids array")
        ids = np.asarray(d[key]).astype(str)
    elif path.suffix == ".csv":
        ids = pd.read_csv(path, dtype=str).iloc[:, 0].dropna().to_numpy().astype(str)
    else:
        ids = np.array([ln.strip() for ln in path.read_text().splitlines() if ln.strip()], dtype=str)
    if len(ids) == 0:
        raise ValueError(f"{path}: no ids")
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if len(dup):
        raise ValueError(f"{path}: duplicate id(s) {some(dup)}")
    return ids


def read_benchmark(path) -> dict | None:
    """One Snakemake benchmark TSV as ``{column: float}`` (mean over its repeats), or None when absent.

    Columns used by Aria: ``s`` (wall-clock seconds), ``cpu_time`` (CPU seconds), ``max_rss``
    (peak resident memory, MB).
    """
    import pandas as pd  # lazily: most jobs never read a table

    path = Path(path)
    if not path.exists():
        return None
    df = pd.read_csv(path, sep="\t")
    num = df.apply(pd.to_numeric, errors="coerce")
    return {c: float(num[c].mean()) for c in num.columns if num[c].notna().any()}


def disk_usage(path) -> int:
    """Bytes of a file, or of every file under a directory (a zarr store); 0 when absent."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


#: Columns of a dropped-items table: which item, its split ("" if not known yet), the workflow
#: step that dropped it, why, and the measured value behind the reason (NaN if none).
DROPPED_COLUMNS = ["track_id", "split", "step", "reason", "value"]


def write_dropped(path, rows) -> None:
    """Write the items a job dropped, skipped or filtered (rows of :data:`DROPPED_COLUMNS`), even none."""
    import pandas as pd  # lazily: most jobs never read a table

    df = pd.DataFrame(list(rows), columns=DROPPED_COLUMNS)
    write_csv(path, df)


def read_dropped(paths) -> pd.DataFrame:
    """Concatenate dropped-items tables; a file with another layout raises naming the file."""
    import pandas as pd  # lazily: most jobs never read a table

    frames = []
    for p in paths:
        df = pd.read_csv(p, dtype={"track_id": str, "split": str, "step": str, "reason": str}, keep_default_na=False)
        if list(df.columns) != DROPPED_COLUMNS:
            raise ValueError(f"{p}: not a dropped-items table (columns {list(df.columns)}, want {DROPPED_COLUMNS})")
        df["value"] = pd.to_numeric(df["value"], errors="coerce")
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DROPPED_COLUMNS)
