"""The audio corpus layer: instrument choice, excerpts and quality filters.

Pure functions only (no file access; see :mod:`aria.audio.render` for synthesis
and :mod:`aria.io.fma` for FMA metadata and audio manifests).

Instruments
-----------
:func:`assign_programs` gives each voice (note ``track``) of a piece a General
MIDI program (0-based, 0..127) so that timbre varies across a rendered
corpus. Programs are grouped into the families of :data:`GM_FAMILIES` (the GM
groups of eight, with a few unpitched or odd programs left out). Never used:
percussive and sound-effect programs 112..127, synth effects 96..103,
guitar harmonics (31), timpani (47), orchestra hit (55) and the drum channel.
So every assigned program lies in 0..111.

Quality filters (docs/spec.md §7, "Data filters (FMA)")
-----------------------------------------------
:func:`filter_tracks` works on a track table (one row per track) and returns
the kept rows and the dropped rows with a ``reason`` column. Reason codes:

``silence``
    ``silence_share > max_silence_share``. Fill the ``silence_share`` column
    with :func:`aria.io.audio.silence_fraction` (share of 50 ms frames below
    -60 dBFS RMS) of each track's decoded audio.
``low_engagement``
    ``genre == drop_genre`` and ``listens < min_listens`` or
    ``favorites < min_favorites`` (each test only when its threshold is set).
``genre``
    ``genre == drop_genre`` when neither threshold is set (the whole genre
    is dropped).

A row failing several tests lists them joined by ``";"``, in the order above.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aria.messages import some
from aria.seeding import stable_seed  # noqa: F401 - re-exported (part of this module's API)
from aria.symbolic.notes import NOTE_DTYPE, as_notes

__all__ = [
    "GM_FAMILIES",
    "program_family",
    "stable_seed",
    "assign_programs",
    "select_excerpt",
    "filter_tracks",
]

#: Instrument families -> General MIDI programs (0-based) used by :func:`assign_programs`: General
#: MIDI's blocks of eight programs, in program order ("-": synth effects, 96-103, not used), less three
#: programs that are effects rather than their block's timbre (guitar harmonics, timpani, orchestra hit).
_GM_BLOCKS = (
    "piano chromatic_percussion organ guitar bass strings ensemble brass reed pipe synth_lead synth_pad - ethnic"
).split()
_GM_EFFECTS = {31, 47, 55}
GM_FAMILIES: dict[str, tuple[int, ...]] = {
    name: tuple(p for p in range(8 * i, 8 * i + 8) if p not in _GM_EFFECTS)
    for i, name in enumerate(_GM_BLOCKS)
    if name != "-"
}

_PROGRAM_FAMILY = {p: fam for fam, progs in GM_FAMILIES.items() for p in progs}


def program_family(program: int) -> str | None:
    """Family name of a GM program in :data:`GM_FAMILIES`, or None if unused."""
    return _PROGRAM_FAMILY.get(int(program))


def _rng(random_state) -> np.random.Generator:
    if random_state is None:
        raise ValueError("random_state must be given explicitly (an int, a sequence of ints or a numpy Generator)")
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def assign_programs(n_tracks: int, *, random_state, contrast: float = 0.3) -> list[int]:
    """Choose a General MIDI program for each voice of one piece.

    One family of :data:`GM_FAMILIES` is drawn uniformly for the piece; each
    voice then gets a uniformly drawn program of that family, or, with
    probability ``contrast``, of another uniformly drawn family.

    Parameters
    ----------
    n_tracks : int
        Number of voices (note ``track`` ids 0..n_tracks-1), >= 0.
    random_state : int, sequence of int, or numpy.random.Generator
        Required. An int/sequence seeds a fresh generator (same value, same
        programs); a Generator is advanced in place.
    contrast : float
        Probability in [0, 1] that a voice leaves the piece's family.

    Returns
    -------
    list of int, length n_tracks
        Programs in 0..111; entry ``t`` is the program of track ``t``.
    """
    n_tracks = int(n_tracks)
    if n_tracks < 0:
        raise ValueError(f"n_tracks must be >= 0, got {n_tracks}")
    if not 0.0 <= float(contrast) <= 1.0:
        raise ValueError(f"contrast must lie in [0, 1], got {contrast}")
    rng = _rng(random_state)
    names = list(GM_FAMILIES)
    home = int(rng.integers(len(names)))
    programs = []
    for _ in range(n_tracks):
        fam = home
        if rng.random() < contrast:
            fam = int(rng.integers(len(names) - 1))
            fam += fam >= home  # any family but the piece's own
        progs = GM_FAMILIES[names[fam]]
        programs.append(int(progs[int(rng.integers(len(progs)))]))
    return programs


def select_excerpt(notes, *, duration_s: float, start_s: float = 0.0) -> np.ndarray:
    """Cut the notes sounding in ``[start_s, start_s + duration_s)``.

    Notes are shifted so that the excerpt starts at 0 s; onsets before the
    start are clipped to 0 (held notes are re-struck) and offsets past the end
    are clipped to ``duration_s``. Notes left with zero length are dropped.

    Parameters
    ----------
    notes : numpy.ndarray, shape (n,), dtype NOTE_DTYPE
    duration_s : float
        Excerpt length in seconds, > 0.
    start_s : float
        Excerpt start in seconds, >= 0.

    Returns
    -------
    numpy.ndarray, shape (m,), dtype NOTE_DTYPE
        m <= n, in the input order; all times within ``[0, duration_s]``.
    """
    notes = as_notes(notes)
    duration_s, start_s = float(duration_s), float(start_s)
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if not (np.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    out = notes.copy()
    out["onset"] = np.clip(notes["onset"] - start_s, 0.0, duration_s)
    out["offset"] = np.clip(notes["offset"] - start_s, 0.0, duration_s)
    keep = (notes["onset"] < start_s + duration_s) & (out["offset"] > out["onset"])
    return np.ascontiguousarray(out[keep], dtype=NOTE_DTYPE)


def _ids(df: pd.DataFrame, mask) -> str:
    ids = df["track_id"] if "track_id" in df.columns else df.index.to_series()
    return some(ids[mask])


def _numeric(df: pd.DataFrame, col: str, rows) -> pd.Series:
    if col not in df.columns:
        raise ValueError(f"track table has no '{col}' column (needed by the filter on it)")
    vals = pd.to_numeric(df[col], errors="coerce")
    bad = rows & vals.isna()
    if bad.any():
        raise ValueError(f"track table: missing or non-numeric '{col}' for track(s) {_ids(df, bad)}")
    return vals


def filter_tracks(
    df: pd.DataFrame,
    *,
    max_silence_share: float | None,
    drop_genre: str | None = None,
    min_listens: float | None = None,
    min_favorites: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the docs/spec.md §7 data filters to a track table.

    Parameters
    ----------
    df : pandas.DataFrame, one row per track
        Columns used: ``silence_share`` (fraction in [0, 1], when
        ``max_silence_share`` is set), ``genre`` (when ``drop_genre`` is set),
        ``listens`` / ``favorites`` (when their thresholds are set). A
        ``track_id`` column, if present, names rows in errors.
    max_silence_share : float or None
        Drop tracks with ``silence_share > max_silence_share``; None: no
        silence filter.
    drop_genre : str, optional
        Genre (e.g. ``"Experimental"``) whose tracks are subject to the
        engagement thresholds.
    min_listens, min_favorites : float, optional
        A ``drop_genre`` track is dropped if ``listens < min_listens`` or
        ``favorites < min_favorites``. With ``drop_genre`` set and both None,
        every track of that genre is dropped.

    Returns
    -------
    kept : pandas.DataFrame
        The rows that pass, input order and index kept.
    dropped : pandas.DataFrame
        The other rows, plus a ``reason`` column (codes in the module
        docstring).

    Raises
    ------
    ValueError
        A needed column is missing, or a value it needs is missing or not
        numeric (the message names up to five tracks).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    everyone = pd.Series(True, index=df.index)
    reasons = [pd.Series(False, index=df.index) for _ in range(3)]
    if max_silence_share is not None:
        share = _numeric(df, "silence_share", everyone)
        reasons[0] = share > float(max_silence_share)
    if drop_genre is not None:
        if "genre" not in df.columns:
            raise ValueError("track table has no 'genre' column (needed by drop_genre)")
        in_genre = (df["genre"] == drop_genre).fillna(False).astype(bool)
        if min_listens is None and min_favorites is None:
            reasons[2] = in_genre
        else:
            low = pd.Series(False, index=df.index)
            if min_listens is not None:
                low |= _numeric(df, "listens", in_genre) < float(min_listens)
            if min_favorites is not None:
                low |= _numeric(df, "favorites", in_genre) < float(min_favorites)
            reasons[1] = in_genre & low
    elif min_listens is not None or min_favorites is not None:
        raise ValueError("min_listens / min_favorites apply to drop_genre tracks; set drop_genre too")
    codes = ("silence", "low_engagement", "genre")
    flags = np.column_stack([r.to_numpy(dtype=bool) for r in reasons])
    drop = flags.any(axis=1)
    dropped = df.iloc[np.flatnonzero(drop)].copy()
    dropped["reason"] = pd.Series(
        [";".join(c for c, f in zip(codes, row) if f) for row in flags[drop]],
        index=dropped.index,
        dtype=object,
    )
    return df.iloc[np.flatnonzero(~drop)].copy(), dropped
