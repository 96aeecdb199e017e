"""The 12 symbolic features of docs/spec.md §5 (jSymbolic 2.2 subset), from note lists.

Every feature is a float64 1-D array; :data:`FEATURE_DIMS` gives the lengths
and :data:`CHANNELS` groups them into the five evidence channels.

Definitions (notes: onset/offset in seconds, pitch, velocity, track; beats from
the tempo map, see :func:`aria.symbolic.notes.seconds_to_beats`; "L1" = normalized to sum
1, all zeros when there is nothing to count):

melodic_interval_hist (25)
    Per track, the skyline: for each distinct onset time (exact equality) the
    highest pitch, in onset order. ``|p[i+1] - p[i]|`` semitones counted into
    bins 0..24 (24 collects all intervals >= 24), pooled over tracks; L1.
    Intervals never cross tracks.
pitch_class_hist (12)
    Count of notes per ``pitch mod 12``; L1.
vertical_interval_hist (12)
    On the 50 Hz grid (below), for every unordered pair of distinct notes
    sounding in a frame, ``|p_a - p_b| mod 12`` (so a fifth is bin 7, an octave
    or a doubled unison bin 0); counts summed over frames; L1.
note_density (1)
    Number of notes / (max offset - min onset), notes per second.
mean_rhythmic_value (1)
    Mean of ``beats(offset) - beats(onset)``, in quarter-note beats.
rhythmic_value_hist (11)
    Each duration in beats snapped to the nearest (in log) of
    :data:`RHYTHMIC_VALUES` = 0.125 ... 8 (32nd note ... double whole); exact
    log-midpoint ties go to the shorter value (a zero-length note counts as
    0.125); L1.
velocity_change_mean (1)
    All notes of all tracks ordered by ``(onset, pitch)`` (then track, then
    velocity, for determinism); mean of ``|v[i+1] - v[i]|``.
velocity_std (1), velocity_range (1)
    Population std (ddof=0) and ``max - min`` of all velocities.
polyphony_mean (1), polyphony_std (1)
    Frames at ``t_i = first onset + i / 50`` for all ``t_i < max offset``; a note
    sounds in a frame when ``onset <= t_i < offset`` (so a note shorter than
    20 ms may fall between frames). Over the frames with at least one sounding
    note: mean and population std of the number of sounding notes.
pitch_range (1)
    ``max - min`` pitch in semitones.

Edge-case conventions
---------------------
* Empty note list: every feature is all zeros.
* A single note: histograms as defined (melodic and vertical intervals all
  zeros), note_density = 1 / duration, std/range/change features 0.
* Zero-duration span (all notes have length 0): note_density = 0; notes that
  sound in no grid frame contribute nothing to the grid features, which are 0
  when no frame sounds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from aria.runtime import progress as track_progress
from aria.symbolic.notes import as_notes, as_tempo_map, seconds_to_beats

__all__ = [
    "FEATURE_DIMS",
    "FEATURE_NAMES",
    "CHANNELS",
    "FRAME_RATE",
    "RHYTHMIC_VALUES",
    "extract",
    "extract_many",
]

FEATURE_DIMS: dict[str, int] = {
    "melodic_interval_hist": 25,
    "pitch_class_hist": 12,
    "vertical_interval_hist": 12,
    "note_density": 1,
    "mean_rhythmic_value": 1,
    "rhythmic_value_hist": 11,
    "velocity_change_mean": 1,
    "velocity_std": 1,
    "velocity_range": 1,
    "polyphony_mean": 1,
    "polyphony_std": 1,
    "pitch_range": 1,
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DIMS)

CHANNELS: dict[str, list[str]] = {
    "melody": ["melodic_interval_hist"],
    "harmony": ["pitch_class_hist", "vertical_interval_hist"],
    "rhythm": ["note_density", "mean_rhythmic_value", "rhythmic_value_hist"],
    "dynamic": ["velocity_change_mean", "velocity_std", "velocity_range"],
    "texture": ["polyphony_mean", "polyphony_std", "pitch_range"],
}

#: Grid rate (frames per second) for vertical intervals and polyphony.
FRAME_RATE = 50.0

#: Rhythmic values in quarter-note beats: 32nd, 16th, 8th, dotted 8th, quarter,
#: dotted quarter, half, dotted half, whole, dotted whole, double whole.
RHYTHMIC_VALUES = np.array([0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
_LOG_RV_EDGES = (np.log(RHYTHMIC_VALUES[:-1]) + np.log(RHYTHMIC_VALUES[1:])) / 2


def _l1(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def _zeros() -> dict[str, np.ndarray]:
    return {name: np.zeros(d, dtype=np.float64) for name, d in FEATURE_DIMS.items()}


def _melodic_interval_hist(notes: np.ndarray) -> np.ndarray:
    # Sort by (track, onset, pitch); the last note of each (track, onset) run is
    # the skyline note.
    order = np.lexsort((notes["pitch"], notes["onset"], notes["track"]))
    track = notes["track"][order]
    onset = notes["onset"][order]
    pitch = notes["pitch"][order].astype(np.int64)
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (track[1:] != track[:-1]) | (onset[1:] != onset[:-1])
    sky_track, sky_pitch = track[last], pitch[last]
    same = sky_track[1:] == sky_track[:-1]
    intervals = np.abs(np.diff(sky_pitch))[same]
    return _l1(np.bincount(np.minimum(intervals, 24), minlength=25))


def _grid_features(notes: np.ndarray) -> tuple[np.ndarray, float, float]:
    """vertical_interval_hist, polyphony_mean, polyphony_std on the 50 Hz grid.

    The grid state only changes where a note enters or leaves, so frames are
    grouped into runs between consecutive boundaries (at most 2n + 1 runs) and
    each run is weighted by its frame count: cost O(n log n + n * U) with U
    distinct pitches, independent of the duration.
    """
    onset, offset = notes["onset"], notes["offset"]
    t0, t_end = onset.min(), offset.max()
    n_frames = int(np.ceil((t_end - t0) * FRAME_RATE)) + 1
    frames = t0 + np.arange(n_frames) / FRAME_RATE
    n_frames = int(np.searchsorted(frames, t_end, side="left"))  # keep t_i < t_end
    frames = frames[:n_frames]
    start = np.searchsorted(frames, onset, side="left")  # first frame with t >= onset
    stop = np.searchsorted(frames, offset, side="left")  # first frame with t >= offset
    sounding = stop > start
    if not sounding.any():
        return np.zeros(12), 0.0, 0.0
    start, stop = start[sounding], stop[sounding]
    pitches, pidx = np.unique(notes["pitch"][sounding].astype(np.int64), return_inverse=True)
    pidx = pidx.reshape(-1)

    bounds = np.unique(np.concatenate((start, stop)))
    weights = np.diff(bounds).astype(np.float64)  # frames per run
    diff = np.zeros((bounds.size, pitches.size), dtype=np.float64)
    np.add.at(diff, (np.searchsorted(bounds, start), pidx), 1.0)
    np.add.at(diff, (np.searchsorted(bounds, stop), pidx), -1.0)
    counts = np.cumsum(diff, axis=0)[:-1]  # (runs, U): notes per pitch in each run

    poly = counts.sum(axis=1)
    active = poly > 0
    w, p = weights[active], poly[active]
    mean = float(np.sum(w * p) / np.sum(w))
    std = float(np.sqrt(np.sum(w * (p - mean) ** 2) / np.sum(w)))

    # Pair counts summed over frames: gram[a, b] = sum_f c[f, a] * c[f, b].
    gram = (counts * weights[:, None]).T @ counts
    hist = np.zeros(12, dtype=np.float64)
    # Same pitch (doublings): C(c, 2) pairs per frame, interval 0.
    per_pitch = weights @ counts
    hist[0] += np.sum(np.diag(gram) - per_pitch) / 2
    iu, ju = np.triu_indices(pitches.size, k=1)
    np.add.at(hist, (pitches[ju] - pitches[iu]) % 12, gram[iu, ju])
    return _l1(np.rint(hist)), mean, std


def _features(notes: np.ndarray, tempo_map: np.ndarray) -> dict[str, np.ndarray]:
    out = _zeros()
    if notes.size == 0:
        return out
    pitch = notes["pitch"].astype(np.int64)
    velocity = notes["velocity"].astype(np.float64)
    onset, offset = notes["onset"], notes["offset"]

    out["melodic_interval_hist"] = _melodic_interval_hist(notes)
    out["pitch_class_hist"] = _l1(np.bincount(pitch % 12, minlength=12))
    vih, pmean, pstd = _grid_features(notes)
    out["vertical_interval_hist"] = vih
    out["polyphony_mean"][0] = pmean
    out["polyphony_std"][0] = pstd

    span = offset.max() - onset.min()
    out["note_density"][0] = notes.size / span if span > 0 else 0.0
    beats = seconds_to_beats(np.stack([onset, offset]), tempo_map)
    dur = np.maximum(beats[1] - beats[0], 0.0)
    out["mean_rhythmic_value"][0] = dur.mean()
    with np.errstate(divide="ignore"):
        bins = np.searchsorted(_LOG_RV_EDGES, np.log(dur), side="left")
    out["rhythmic_value_hist"] = _l1(np.bincount(bins, minlength=11))

    order = np.lexsort((velocity, notes["track"], pitch, onset))
    if notes.size > 1:
        out["velocity_change_mean"][0] = np.abs(np.diff(velocity[order])).mean()
    out["velocity_std"][0] = velocity.std()
    out["velocity_range"][0] = velocity.max() - velocity.min()
    out["pitch_range"][0] = pitch.max() - pitch.min()
    return out


def extract(path_or_notes, *, tempo_map=None) -> dict[str, np.ndarray]:
    """Compute the 12 symbolic features of one piece or segment.

    Parameters
    ----------
    path_or_notes : str, os.PathLike or numpy.ndarray
        A MIDI file path (read with :func:`aria.io.midi.read_midi`, which also
        supplies the tempo map) or a note list, shape (n,), dtype
        :data:`aria.symbolic.notes.NOTE_DTYPE` (onset/offset in seconds). Order does not
        matter. n = 0 gives all-zero features.
    tempo_map : array_like, shape (m, 2), optional
        Rows ``(time_s, seconds_per_quarter_beat)``. For a note list the default
        is 120 BPM; for a path the file's own tempo map is used unless this is
        given, in which case it overrides it. Only the rhythmic-value features
        depend on it.

    Returns
    -------
    dict[str, numpy.ndarray]
        Keys exactly :data:`FEATURE_NAMES` (docs/spec.md §5 order); each value float64,
        shape ``(FEATURE_DIMS[key],)``. Units: note_density notes/s,
        mean_rhythmic_value quarter beats, velocity_* MIDI velocity units,
        polyphony_* notes, pitch_range semitones; histograms sum to 1 (or 0).
    """
    if isinstance(path_or_notes, (str, os.PathLike)):
        from aria.io.midi import read_midi

        notes, file_tempo = read_midi(path_or_notes)
        tm = as_tempo_map(file_tempo if tempo_map is None else tempo_map)
    else:
        notes = as_notes(path_or_notes)
        tm = as_tempo_map(tempo_map)
    return _features(notes, tm)


def extract_many(
    notes_list: Iterable, *, tempo_maps: Sequence | None = None, progress: bool = False
) -> dict[str, np.ndarray]:
    """Compute the features of many note lists and stack them.

    Parameters
    ----------
    notes_list : iterable of numpy.ndarray (NOTE_DTYPE) or paths
        n segments (anything :func:`extract` accepts).
    tempo_maps : sequence of (array_like (m, 2) or None), optional
        One tempo map per item (None entries use :func:`extract`'s default);
        default None for all.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    dict[str, numpy.ndarray]
        Keys :data:`FEATURE_NAMES`; each value float64 of shape
        ``(n, FEATURE_DIMS[key])`` (``(0, d)`` when n = 0). Row i is
        ``extract(notes_list[i], tempo_map=tempo_maps[i])``.
    """
    items = list(notes_list)
    if tempo_maps is None:
        tempo_maps = [None] * len(items)
    elif len(tempo_maps) != len(items):
        raise ValueError(f"got {len(tempo_maps)} tempo maps for {len(items)} note lists")
    out = {name: np.zeros((len(items), d), dtype=np.float64) for name, d in FEATURE_DIMS.items()}
    iterator = track_progress(
        enumerate(zip(items, tempo_maps)),
        total=len(items),
        desc="symbolic features",
        unit="seg",
        name=lambda it: f"segment {it[0]}",
        enabled=progress,
        mininterval=0.1,
    )
    for i, (notes, tm) in iterator:
        feats = extract(notes, tempo_map=tm)
        for name in FEATURE_NAMES:
            out[name][i] = feats[name]
    return out
