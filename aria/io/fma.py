"""Audio corpus metadata: FMA's ``tracks.csv`` and user audio manifests.

FMA ``tracks.csv`` (from ``fma_metadata.zip``)
----------------------------------------------
A CSV with a two-row column header, read as ``pd.read_csv(path, index_col=0,
header=[0, 1])``: the first row names the entity (``album``, ``artist``,
``set``, ``track``), the second the field; the index column is ``track_id``
(the released file has a third line ``track_id,,,...`` naming the index;
files without it are read the same). :func:`read_fma_tracks` uses

==========================  =================================================
``(track, genre_top)``      -> ``genre`` (may be missing in the large/full sets)
``(track, listens)``        -> ``listens`` (int)
``(track, favorites)``      -> ``favorites`` (int)
``(track, duration)``       -> ``duration`` (seconds, float)
``(set, split)``            -> ``split``: ``training`` -> ``train``,
                               ``validation`` / ``test`` -> ``eval``;
                               the original value is kept in ``fma_split``
``(set, subset)``           -> ``subset`` (``small`` < ``medium`` < ``large``
                               < ``full``; a track's smallest subset)
==========================  =================================================

Note that ``album`` and ``artist`` also have ``listens`` / ``favorites``
fields; only the ``track`` ones are used.

Audio manifests
---------------
:func:`read_audio_manifest` reads a user corpus manifest with the columns of
:func:`aria.io.tables.read_manifest` (``track_id, path, genre, split``) plus
optional ``listens`` and ``favorites``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aria.io.tables import read_manifest
from aria.messages import some

__all__ = ["FMA_SUBSETS", "FMA_SPLITS", "read_fma_tracks", "fma_audio_path", "read_audio_manifest"]

#: FMA subsets, each contained in the next.
FMA_SUBSETS = ("small", "medium", "large", "full")
#: FMA split -> Aria split.
FMA_SPLITS = {"training": "train", "validation": "eval", "test": "eval"}

#: The numeric track fields, under FMA's own names.
_FMA_NUMERIC = ("listens", "favorites", "duration")
#: The track table's column -> FMA's (group, field), in the table's order.
_FMA_FIELDS = {"genre": ("track", "genre_top"), **{n: ("track", n) for n in _FMA_NUMERIC}}
_FMA_FIELDS |= {"fma_split": ("set", "split"), "subset": ("set", "subset")}


def read_fma_tracks(tracks_csv, *, subset: str | None = None) -> pd.DataFrame:
    """Read FMA's ``tracks.csv`` into a flat track table.

    Parameters
    ----------
    tracks_csv : str or os.PathLike
        ``fma_metadata/tracks.csv``.
    subset : {"small", "medium", "large", "full"}, optional
        Keep only the tracks of that FMA subset (subsets are nested, so
        ``"medium"`` keeps ``small`` and ``medium`` tracks). Default: all rows.

    Returns
    -------
    pandas.DataFrame, one row per track, file order, default RangeIndex
        Columns ``track_id`` (str, FMA's integer id without padding),
        ``genre`` (str or missing), ``listens`` (int64), ``favorites``
        (int64), ``split`` (``train`` | ``eval``), ``duration`` (float64,
        seconds), ``fma_split`` (str), ``subset`` (str).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file: missing columns, duplicate track ids, non-numeric
        listens/favorites/duration, unknown split or subset values.
    """
    path = Path(tracks_csv)
    if not path.is_file():
        raise FileNotFoundError(f"FMA tracks table not found: {path}")
    if subset is not None and subset not in FMA_SUBSETS:
        raise ValueError(f"subset must be one of {FMA_SUBSETS}, got {subset!r}")
    try:
        raw = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not an FMA tracks.csv (two header rows expected): {exc}") from exc
    missing = [f"{a}.{b}" for a, b in _FMA_FIELDS.values() if (a, b) not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing FMA column(s) {missing}")
    ids = pd.Series(raw.index)
    num_ids = pd.to_numeric(ids, errors="coerce")
    if num_ids.isna().any() or (num_ids != num_ids.round()).any():
        raise ValueError(f"{path}: non-integer track_id(s) {some(ids[num_ids.isna() | (num_ids != num_ids.round())])}")
    track_id = num_ids.astype("int64").astype(str)
    dup = track_id[track_id.duplicated()].unique()
    if len(dup):
        raise ValueError(f"{path}: duplicate track_id(s) {some(dup)}")

    df = pd.DataFrame({"track_id": track_id.to_numpy()})
    for name, col in _FMA_FIELDS.items():
        df[name] = raw[col].to_numpy()
    for name in _FMA_NUMERIC:
        vals = pd.to_numeric(df[name], errors="coerce")
        bad = vals.isna()
        if bad.any():
            raise ValueError(
                f"{path}: missing or non-numeric track {name} for track_id(s) {some(df.loc[bad, 'track_id'])}"
            )
        df[name] = vals.astype("float64" if name == "duration" else "int64")
    bad = ~df["fma_split"].isin(list(FMA_SPLITS))
    if bad.any():
        raise ValueError(
            f"{path}: set.split must be one of {list(FMA_SPLITS)}; "
            f"bad rows for track_id(s) {some(df.loc[bad, 'track_id'])}"
        )
    bad = ~df["subset"].isin(FMA_SUBSETS)
    if bad.any():
        raise ValueError(
            f"{path}: set.subset must be one of {list(FMA_SUBSETS)}; "
            f"bad rows for track_id(s) {some(df.loc[bad, 'track_id'])}"
        )
    df["split"] = df["fma_split"].map(FMA_SPLITS)
    if subset is not None:
        allowed = FMA_SUBSETS[: FMA_SUBSETS.index(subset) + 1]
        df = df[df["subset"].isin(allowed)].reset_index(drop=True)
    return df[["track_id", "genre", "listens", "favorites", "split", "duration", "fma_split", "subset"]]


def fma_audio_path(audio_dir, track_id) -> Path:
    """Path of an FMA audio file: ``audio_dir/000/000002.mp3`` for track 2.

    Parameters
    ----------
    audio_dir : str or os.PathLike
        An unzipped ``fma_small`` / ``fma_medium`` / ... folder.
    track_id : int or str
        FMA track id.
    """
    tid = f"{int(track_id):06d}"
    return Path(audio_dir) / tid[:3] / f"{tid}.mp3"


def read_audio_manifest(path, *, root=None) -> pd.DataFrame:
    """Read and check a user audio corpus manifest (CSV).

    Parameters
    ----------
    path : str or os.PathLike
        CSV with columns ``track_id, path, genre, split`` (``train`` |
        ``eval``) and optionally ``listens``, ``favorites`` (non-negative
        numbers, used by :func:`aria.audio.corpus.filter_tracks`).
    root : str or os.PathLike, optional
        Folder that ``path`` entries are relative to; default the manifest's
        folder.

    Returns
    -------
    pandas.DataFrame
        As :func:`aria.io.tables.read_manifest` (string columns plus an
        absolute ``abspath``), with ``listens`` / ``favorites`` as float64
        when present.

    Raises
    ------
    FileNotFoundError
        If the manifest does not exist.
    ValueError
        Naming the manifest and the offending rows: the checks of
        :func:`~aria.io.tables.read_manifest` (columns, duplicate ids, split
        values, audio files that do not exist), plus missing genres and
        missing, non-numeric or negative listens/favorites.
    """
    df = read_manifest(path, root=root)
    bad = df["genre"].isna() | (df["genre"].astype(str).str.strip() == "")
    if bad.any():
        raise ValueError(f"{path}: missing genre for track_id(s) {some(df.loc[bad, 'track_id'])}")
    for col in ("listens", "favorites"):
        if col not in df.columns:
            continue
        vals = pd.to_numeric(df[col], errors="coerce")
        bad = vals.isna() | (vals < 0)
        if bad.any():
            raise ValueError(
                f"{path}: '{col}' must be a non-negative number; bad rows for track_id(s) "
                f"{some(df.loc[bad, 'track_id'])}"
            )
        df[col] = vals.astype("float64")
    return df
