"""MIDI files <-> note lists (see :mod:`aria.symbolic.notes` for the conventions).

Reading (:func:`read_midi`)
---------------------------
* Every MIDI track and every channel is read. Each ``(MIDI track, channel)``
  pair that holds at least one note becomes one Aria ``track`` id, numbered
  0, 1, ... in order of (MIDI track index, channel). The drum channel (10, i.e.
  mido channel 9) is therefore always its own track.
* ``note_on`` with velocity 0 is a note-off. Overlapping notes of the same
  pitch on the same track/channel are closed first-in first-out. A note-off
  with no open note is ignored. Notes still open at the end are closed at the
  time of the file's last event (including ``end_of_track``). Zero-length
  notes are dropped.
* Tempo (``set_tempo``) events of all tracks form one global tempo map
  (type-2 files, whose tracks have independent timelines, are read as if they
  were type 1). Without a tempo event at tick 0 the MIDI default 120 BPM holds
  until the first one.

Writing (:func:`write_midi`)
----------------------------
A type-1 file: track 0 holds the tempo map, then one MIDI track per distinct
``track`` value (ascending), on channels 0, 1, ... skipping the drum channel 10.
So ``read_midi(write_midi(notes))`` returns the same track ids when they are
0..n-1. Times are rounded to the nearest tick; a note shorter than one tick is
lengthened to one tick so that it survives the round trip.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import mido
import numpy as np

from aria.io.stores import atomic_file
from aria.symbolic.notes import (
    NOTE_DTYPE,
    _beat_marks,
    _sort_notes,
    as_notes,
    as_tempo_map,
    seconds_to_beats,
)

__all__ = ["read_midi", "write_midi"]

_DEFAULT_TEMPO_US = 500_000  # 120 BPM, the MIDI default
_DRUM_CHANNEL = 9  # channel 10 in 1-based numbering
_WRITE_CHANNELS = [c for c in range(16) if c != _DRUM_CHANNEL]


def _ticks_to_seconds(ticks: np.ndarray, tempo_ticks: np.ndarray, tempo_us: np.ndarray, tpb: int) -> np.ndarray:
    """Convert absolute ticks to seconds given tempo changes (tick, us/beat)."""
    sec_per_tick = tempo_us / 1e6 / tpb
    marks = np.concatenate(([0.0], np.cumsum(np.diff(tempo_ticks) * sec_per_tick[:-1])))
    k = np.searchsorted(tempo_ticks, ticks, side="right") - 1
    return marks[k] + (ticks - tempo_ticks[k]) * sec_per_tick[k]


def read_midi(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a MIDI file into a note list and a tempo map.

    Parameters
    ----------
    path : str or os.PathLike
        A standard MIDI file (type 0, 1 or 2).

    Returns
    -------
    notes : numpy.ndarray, shape (n,), dtype NOTE_DTYPE
        All notes (n >= 1), onsets/offsets in seconds, sorted by
        ``(onset, pitch, track)``. Track ids as described in the module
        docstring.
    tempo_map : numpy.ndarray, shape (m, 2), float64
        Rows ``(time_s, seconds_per_quarter_beat)``, first row at 0 s;
        consecutive rows with equal tempo are merged.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is empty (0 bytes), cannot be parsed as MIDI, uses SMPTE
        time division, or contains no notes; the message starts with the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MIDI file not found")
    if path.stat().st_size == 0:  # said as the audio reader says it (aria.io.audio.load_audio)
        raise ValueError(f"{path}: unreadable MIDI file: zero-length file (0 bytes)")
    try:
        mid = mido.MidiFile(str(path))
    except Exception as exc:  # mido raises OSError, EOFError, KeyError, ValueError, ...
        why = str(exc) or ("the file ends early (cut short?)" if isinstance(exc, EOFError) else "")
        raise ValueError(f"{path}: cannot parse MIDI file: {type(exc).__name__}: {why}") from None
    tpb = int(mid.ticks_per_beat)
    if tpb <= 0 or tpb >= 0x8000:
        raise ValueError(f"{path}: unsupported MIDI time division {tpb} (SMPTE?)")

    tempo_events: list[tuple[int, int, int]] = []  # (tick, order, us per beat)
    # rows: (on_tick, off_tick, pitch, velocity, track_index, channel)
    rows: list[tuple[int, int, int, int, int, int]] = []
    hanging: list[tuple[int, int, int, int, int]] = []  # (on_tick, pitch, vel, track, channel)
    last_tick = 0
    order = 0
    for ti, track in enumerate(mid.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], collections.deque] = collections.defaultdict(collections.deque)
        for msg in track:
            tick += int(msg.time)
            order += 1
            kind = msg.type
            if kind == "note_on" and msg.velocity > 0:
                open_notes[(msg.channel, msg.note)].append((tick, msg.velocity))
            elif kind == "note_off" or kind == "note_on":
                queue = open_notes.get((msg.channel, msg.note))
                if queue:
                    on_tick, vel = queue.popleft()
                    rows.append((on_tick, tick, msg.note, vel, ti, msg.channel))
            elif kind == "set_tempo":
                tempo_events.append((tick, order, int(msg.tempo)))
        last_tick = max(last_tick, tick)
        for (channel, pitch), queue in open_notes.items():
            for on_tick, vel in queue:
                hanging.append((on_tick, pitch, vel, ti, channel))
    rows.extend((on, last_tick, p, v, ti, ch) for on, p, v, ti, ch in hanging)

    arr = np.array(rows, dtype=np.int64).reshape(-1, 6)
    arr = arr[arr[:, 1] > arr[:, 0]]  # drop zero-length notes
    if arr.shape[0] == 0:
        raise ValueError(f"{path}: MIDI file contains no notes")
    if (arr[:, 5] == _DRUM_CHANNEL).all():
        raise ValueError(
            f"{path}: MIDI file has only drum notes (channel 10): no pitched notes for melody, harmony "
            "or pitch features"
        )

    # Global tempo map in ticks; the last event at a tick wins.
    tempo_events.sort()
    by_tick: dict[int, int] = {0: _DEFAULT_TEMPO_US}
    for tick, _, us in tempo_events:
        by_tick[tick] = us
    tempo_ticks = np.array(sorted(by_tick), dtype=np.int64)
    tempo_us = np.array([by_tick[t] for t in tempo_ticks], dtype=np.float64)
    keep = np.concatenate(([True], tempo_us[1:] != tempo_us[:-1]))
    tempo_ticks, tempo_us = tempo_ticks[keep], tempo_us[keep]

    times = _ticks_to_seconds(arr[:, :2].astype(np.float64), tempo_ticks, tempo_us, tpb)
    _, track_ids = np.unique(arr[:, 4] * 16 + arr[:, 5], return_inverse=True)
    notes = np.empty(arr.shape[0], dtype=NOTE_DTYPE)
    notes["onset"] = times[:, 0]
    notes["offset"] = times[:, 1]
    notes["pitch"] = arr[:, 2]
    notes["velocity"] = arr[:, 3]
    notes["track"] = track_ids.reshape(-1)
    tempo_map = np.column_stack(
        [_ticks_to_seconds(tempo_ticks.astype(np.float64), tempo_ticks, tempo_us, tpb), tempo_us / 1e6]
    )
    return _sort_notes(notes), tempo_map


def write_midi(path, notes, *, tempo_map=None, ticks_per_beat: int = 480) -> None:
    """Write a note list to a type-1 MIDI file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; written to a temporary sibling and renamed into place, so
        on failure ``path`` is untouched and no temporary file remains.
    notes : numpy.ndarray, shape (n,), NOTE_DTYPE (or compatible structured array)
        Onsets/offsets in seconds. Velocities are clipped to 1..127 (0 would
        mean note-off).
    tempo_map : array_like, shape (m, 2), optional
        Rows ``(time_s, seconds_per_quarter_beat)``; default 120 BPM. Tempo
        changes are placed at the nearest tick; beat lengths are rounded to
        whole microseconds.
    ticks_per_beat : int, default 480
        Time resolution (ticks per quarter note).

    Raises
    ------
    ValueError
        For invalid notes (see :func:`aria.symbolic.notes.as_notes`), negative onsets,
        more than 15 tracks, or a non-positive ``ticks_per_beat``.
    """
    notes = as_notes(notes)
    tm = as_tempo_map(tempo_map)
    tpb = int(ticks_per_beat)
    if not 0 < tpb < 0x8000:
        raise ValueError(f"{path}: ticks_per_beat must be in 1..32767, got {ticks_per_beat}")
    if notes.size and notes["onset"].min() < 0:
        raise ValueError(f"{path}: notes must not start before 0 s")
    track_values = np.unique(notes["track"])
    if track_values.size > len(_WRITE_CHANNELS):
        raise ValueError(f"{path}: {track_values.size} tracks, at most {len(_WRITE_CHANNELS)} can be written")

    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    conductor = mido.MidiTrack()
    tempo_ticks = np.rint(_beat_marks(tm) * tpb).astype(np.int64)
    prev = 0
    for tick, spb in zip(tempo_ticks, tm[:, 1]):
        us = int(np.clip(round(spb * 1e6), 1, 0xFFFFFF))
        conductor.append(mido.MetaMessage("set_tempo", tempo=us, time=int(tick - prev)))
        prev = int(tick)
    conductor.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(conductor)

    on_ticks = np.rint(seconds_to_beats(notes["onset"], tm) * tpb).astype(np.int64)
    off_ticks = np.rint(seconds_to_beats(notes["offset"], tm) * tpb).astype(np.int64)
    off_ticks = np.maximum(off_ticks, on_ticks + 1)
    velocity = np.clip(notes["velocity"], 1, 127)
    for channel, value in zip(_WRITE_CHANNELS, track_values):
        idx = np.flatnonzero(notes["track"] == value)
        # events: (tick, kind 0=off first, pitch, velocity); offs before ons at a tick
        ticks = np.concatenate([off_ticks[idx], on_ticks[idx]])
        kind = np.concatenate([np.zeros(idx.size, np.int64), np.ones(idx.size, np.int64)])
        pitch = np.concatenate([notes["pitch"][idx], notes["pitch"][idx]]).astype(np.int64)
        vel = np.concatenate([np.zeros(idx.size, np.int64), velocity[idx].astype(np.int64)])
        order = np.lexsort((pitch, kind, ticks))
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=f"track {int(value)}", time=0))
        prev = 0
        for i in order:
            msg_type = "note_on" if kind[i] else "note_off"
            track.append(
                mido.Message(
                    msg_type, channel=channel, note=int(pitch[i]), velocity=int(vel[i]), time=int(ticks[i] - prev)
                )
            )
            prev = int(ticks[i])
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)

    with atomic_file(path) as tmp:
        mid.save(os.fspath(tmp))
