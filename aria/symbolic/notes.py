"""The note-list and tempo-map conventions of Aria, defined once.

Note list
---------
A note list is a 1-D numpy structured array of dtype :data:`NOTE_DTYPE`::

    onset     float64   seconds from the start of the piece
    offset    float64   seconds, offset >= onset
    pitch     int16     MIDI pitch 0..127
    velocity  int16     MIDI velocity 0..127
    track     int16     track id (0, 1, ...; see :func:`aria.io.midi.read_midi`)

Canonical order is by ``(onset, pitch, track)``; :func:`make_notes` returns that
order.

Tempo map
---------
A tempo map is a float64 array of shape ``(n, 2)`` whose rows are
``(time_s, seconds_per_quarter_beat)``: from ``time_s`` on (until the next row)
one quarter-note beat lasts ``seconds_per_quarter_beat`` seconds. The first row
is at time 0 and times are strictly increasing. :data:`DEFAULT_TEMPO_MAP` is
120 BPM (0.5 s per beat). Beat positions are the piecewise-linear integral of
the tempo map (:func:`seconds_to_beats`); a note's duration in beats is
``beats(offset) - beats(onset)``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NOTE_DTYPE",
    "DEFAULT_TEMPO_MAP",
    "make_notes",
    "empty_notes",
    "as_notes",
    "as_tempo_map",
    "seconds_to_beats",
    "shift_tempo_map",
    "beats_to_seconds",
]

NOTE_DTYPE = np.dtype([("onset", "f8"), ("offset", "f8"), ("pitch", "i2"), ("velocity", "i2"), ("track", "i2")])

#: 120 BPM: one row at time 0, 0.5 s per quarter-note beat.
DEFAULT_TEMPO_MAP = np.array([[0.0, 0.5]], dtype=np.float64)
DEFAULT_TEMPO_MAP.setflags(write=False)


def _sort_notes(notes: np.ndarray) -> np.ndarray:
    order = np.lexsort((notes["track"], notes["pitch"], notes["onset"]))
    return notes[order]


def _validate_notes(notes: np.ndarray) -> None:
    if notes.size == 0:
        return
    onset, offset = notes["onset"], notes["offset"]
    if not (np.isfinite(onset).all() and np.isfinite(offset).all()):
        raise ValueError("note onsets and offsets must be finite")
    if (offset < onset).any():
        i = int(np.flatnonzero(offset < onset)[0])
        raise ValueError(f"note {i} ends before it starts (onset {onset[i]} s, offset {offset[i]} s)")
    pitch, velocity = notes["pitch"], notes["velocity"]
    if pitch.min() < 0 or pitch.max() > 127:
        raise ValueError("note pitches must lie in 0..127")
    if velocity.min() < 0 or velocity.max() > 127:
        raise ValueError("note velocities must lie in 0..127")


def empty_notes() -> np.ndarray:
    """Return an empty note list, shape ``(0,)``, dtype :data:`NOTE_DTYPE`."""
    return np.zeros(0, dtype=NOTE_DTYPE)


def make_notes(onset, offset, pitch, velocity, track=0) -> np.ndarray:
    """Build a note list from per-field arrays.

    Parameters
    ----------
    onset, offset : array_like of float, shape (n,)
        Note start and end times in seconds (``offset >= onset``).
    pitch : array_like of int, shape (n,)
        MIDI pitches 0..127.
    velocity : array_like of int, shape (n,) or scalar
        MIDI velocities 0..127.
    track : array_like of int, shape (n,) or scalar, default 0
        Track ids.

    Returns
    -------
    numpy.ndarray, shape (n,), dtype NOTE_DTYPE
        Sorted by ``(onset, pitch, track)``.

    Raises
    ------
    ValueError
        On shape mismatch, non-finite times, ``offset < onset`` or pitch/velocity
        outside 0..127.
    """
    onset = np.atleast_1d(np.asarray(onset, dtype=np.float64))
    offset = np.atleast_1d(np.asarray(offset, dtype=np.float64))
    pitch = np.atleast_1d(np.asarray(pitch))
    if onset.ndim != 1:
        raise ValueError(f"onset must be 1-D, got shape {onset.shape}")
    n = onset.shape[0]
    try:
        fields = np.broadcast_arrays(onset, offset, pitch, np.asarray(velocity), np.asarray(track))
    except ValueError as exc:
        raise ValueError(f"note fields have incompatible shapes: {exc}") from None
    if fields[0].shape != (n,):
        raise ValueError(f"note fields have incompatible shapes (expected ({n},))")
    notes = np.empty(n, dtype=NOTE_DTYPE)
    for name, values in zip(NOTE_DTYPE.names, fields):
        if name in ("pitch", "velocity", "track"):
            values = np.asarray(values)
            if values.size and not np.array_equal(values, np.round(values)):
                raise ValueError(f"note {name}s must be integers")
        notes[name] = values
    _validate_notes(notes)
    return _sort_notes(notes)


def as_notes(notes) -> np.ndarray:
    """Validate a note list and return it as a :data:`NOTE_DTYPE` array.

    Accepts any structured array with the fields ``onset``, ``offset``,
    ``pitch``, ``velocity`` (``track`` optional, default 0). The input order is
    kept (use :func:`make_notes` for the canonical order).

    Parameters
    ----------
    notes : numpy.ndarray, shape (n,), structured

    Returns
    -------
    numpy.ndarray, shape (n,), dtype NOTE_DTYPE
    """
    notes = np.asarray(notes)
    if notes.dtype == NOTE_DTYPE and notes.ndim == 1:
        _validate_notes(notes)
        return notes
    names = notes.dtype.names or ()
    missing = [f for f in ("onset", "offset", "pitch", "velocity") if f not in names]
    if missing or notes.ndim != 1:
        raise ValueError(
            f"expected a 1-D note array with fields {NOTE_DTYPE.names}, got dtype {notes.dtype} and shape {notes.shape}"
        )
    out = np.zeros(notes.shape[0], dtype=NOTE_DTYPE)
    for name in NOTE_DTYPE.names:
        if name in names:
            out[name] = notes[name]
    _validate_notes(out)
    return out


def as_tempo_map(tempo_map=None) -> np.ndarray:
    """Validate a tempo map; ``None`` gives :data:`DEFAULT_TEMPO_MAP`.

    Parameters
    ----------
    tempo_map : array_like, shape (n, 2), optional
        Rows ``(time_s, seconds_per_quarter_beat)``.

    Returns
    -------
    numpy.ndarray, shape (n, 2), float64

    Raises
    ------
    ValueError
        If the first row is not at time 0, times are not strictly increasing,
        or a beat length is not positive and finite.
    """
    if tempo_map is None:
        return DEFAULT_TEMPO_MAP
    tm = np.asarray(tempo_map, dtype=np.float64)
    if tm.ndim != 2 or tm.shape[1] != 2 or tm.shape[0] < 1:
        raise ValueError(f"tempo map must have shape (n, 2) with n >= 1, got {tm.shape}")
    if not np.isfinite(tm).all():
        raise ValueError("tempo map must be finite")
    if tm[0, 0] != 0.0:
        raise ValueError(f"tempo map must start at time 0, starts at {tm[0, 0]} s")
    if tm.shape[0] > 1 and not (np.diff(tm[:, 0]) > 0).all():
        raise ValueError("tempo map times must be strictly increasing")
    if not (tm[:, 1] > 0).all():
        raise ValueError("tempo map beat lengths must be positive")
    return tm


def _beat_marks(tm: np.ndarray) -> np.ndarray:
    """Beat position at each tempo-map row, shape (n,)."""
    return np.concatenate(([0.0], np.cumsum(np.diff(tm[:, 0]) / tm[:-1, 1])))


def seconds_to_beats(times, tempo_map=None) -> np.ndarray:
    """Convert times in seconds to quarter-note beat positions.

    ``beats(t) = integral from 0 to t of dt / seconds_per_beat(t)``, i.e. a
    piecewise-linear function of ``t``. Times before 0 are extrapolated with the
    first tempo.

    Parameters
    ----------
    times : array_like of float, any shape
        Times in seconds.
    tempo_map : array_like, shape (n, 2), optional
        See module docstring; default 120 BPM.

    Returns
    -------
    numpy.ndarray of float64, same shape as ``times``
        Beat positions (quarter notes) from time 0.
    """
    tm = as_tempo_map(tempo_map)
    t = np.asarray(times, dtype=np.float64)
    marks = _beat_marks(tm)
    k = np.clip(np.searchsorted(tm[:, 0], t, side="right") - 1, 0, None)
    return marks[k] + (t - tm[k, 0]) / tm[k, 1]


def beats_to_seconds(beats, tempo_map=None) -> np.ndarray:
    """Inverse of :func:`seconds_to_beats`.

    Parameters
    ----------
    beats : array_like of float, any shape
        Quarter-note beat positions.
    tempo_map : array_like, shape (n, 2), optional
        Default 120 BPM.

    Returns
    -------
    numpy.ndarray of float64, same shape as ``beats``
        Times in seconds.
    """
    tm = as_tempo_map(tempo_map)
    b = np.asarray(beats, dtype=np.float64)
    marks = _beat_marks(tm)
    k = np.clip(np.searchsorted(marks, b, side="right") - 1, 0, None)
    return tm[k, 0] + (b - marks[k]) * tm[k, 1]


def shift_tempo_map(tempo_map, t0: float) -> np.ndarray:
    """The tempo map seen from time ``t0`` onward, re-based so ``t0`` becomes 0.

    Used for segments cut out of a track: a segment starting at ``t0`` s has
    the tempo in force at ``t0`` at its time 0, then every later change.

    Returns
    -------
    numpy.ndarray, shape (m, 2), a valid tempo map.
    """
    tm = as_tempo_map(tempo_map)
    k = max(int(np.searchsorted(tm[:, 0], t0, side="right")) - 1, 0)
    out = tm[k:].copy()
    out[:, 0] = np.maximum(out[:, 0] - t0, 0.0)
    out[0, 0] = 0.0
    return out
