"""Performance-event tokenization (MusicTransformer style) and fixed-length segments.

Vocabulary (``VOCAB_SIZE`` = 389 ids)::

    0   .. 127   NOTE_ON  pitch
    128 .. 255   NOTE_OFF pitch
    256 .. 355   TIME_SHIFT of (id - 255) * 10 ms      (10 ms .. 1 s)
    356 .. 387   SET_VELOCITY bin (id - 356); velocity = 4 * bin + 2
    388          PAD (never predicted; masked out of every loss)

Times are quantized to ``TIME_STEP`` = 10 ms. All notes of all MIDI tracks are
merged into one stream (track identity is not tokenized).

A *segment* is a non-overlapping block of ``block`` consecutive tokens of one
track's stream; the final partial block is padded with PAD and its mask marks
the real tokens. Each segment decodes back to the notes whose NOTE_ON falls in
it (:func:`segment_notes`), which is what symbolic features are computed on.
"""

from __future__ import annotations

import numpy as np

from aria.symbolic.notes import NOTE_DTYPE

__all__ = [
    "VOCAB_SIZE",
    "PAD",
    "TIME_STEP",
    "encode",
    "decode",
    "split_blocks",
    "segment_notes",
]

NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = 0, 128, 256, 356
N_SHIFT, N_VEL = 100, 32
PAD = 388
VOCAB_SIZE = 389
TIME_STEP = 0.01


def _vel_bin(v):
    return np.clip(np.asarray(v) // 4, 0, N_VEL - 1)


def encode(notes: np.ndarray) -> np.ndarray:
    """Encode notes to performance-event tokens.

    Parameters
    ----------
    notes : structured array of ``aria.symbolic.notes.NOTE_DTYPE``, shape (n,)

    Returns
    -------
    tokens : int64 array, shape (L,)
        Starts at time 0 of the piece (a leading TIME_SHIFT encodes silence
        before the first onset). Note-offs precede note-ons at the same time.
    """
    notes = np.asarray(notes, dtype=NOTE_DTYPE)
    if notes.size == 0:
        return np.zeros(0, dtype=np.int64)
    on = np.round(notes["onset"] / TIME_STEP).astype(np.int64)
    off = np.round(notes["offset"] / TIME_STEP).astype(np.int64)
    off = np.maximum(off, on + 1)
    pitch = notes["pitch"].astype(np.int64)
    vel = _vel_bin(notes["velocity"].astype(np.int64))
    # events: (time, kind 0=off 1=on, pitch, velocity-bin)
    times = np.concatenate([off, on])
    kinds = np.concatenate([np.zeros_like(off), np.ones_like(on)])
    pitches = np.concatenate([pitch, pitch])
    vels = np.concatenate([vel, vel])
    order = np.lexsort((pitches, kinds, times))
    tokens: list[int] = []
    now, cur_vel = 0, -1
    for i in order:
        dt = int(times[i] - now)
        while dt > 0:
            step = min(dt, N_SHIFT)
            tokens.append(TIME_SHIFT + step - 1)
            dt -= step
        now = int(times[i])
        if kinds[i] == 1:
            if vels[i] != cur_vel:
                cur_vel = int(vels[i])
                tokens.append(VELOCITY + cur_vel)
            tokens.append(NOTE_ON + int(pitches[i]))
        else:
            tokens.append(NOTE_OFF + int(pitches[i]))
    return np.asarray(tokens, dtype=np.int64)


def decode(tokens, *, return_on_index: bool = False, initial_velocity: int = 64):
    """Decode tokens back to notes.

    Parameters
    ----------
    tokens : int array, shape (L,)
        PAD tokens are skipped. A NOTE_OFF without an open note is ignored; a
        NOTE_ON of an already sounding pitch first closes the old note; notes
        still open at the end are closed at the final time (at least one step).
    return_on_index : bool, keyword-only
        Also return, per note, the token index of its NOTE_ON.
    initial_velocity : int, keyword-only
        Velocity used before the first SET_VELOCITY token.

    Returns
    -------
    notes : NOTE_DTYPE array, shape (n,), sorted by (onset, pitch); times in s.
    on_index : int array, shape (n,), only when ``return_on_index``.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    now, vel = 0, int(initial_velocity)
    open_: dict[int, tuple[int, int, int]] = {}
    rows: list[tuple[int, int, int, int, int]] = []
    for idx, t in enumerate(tokens.tolist()):
        if t < NOTE_OFF:
            if t in open_:
                s, v, k = open_.pop(t)
                rows.append((s, max(now, s + 1), t, v, k))
            open_[t] = (now, vel, idx)
        elif t < TIME_SHIFT:
            p = t - NOTE_OFF
            if p in open_:
                s, v, k = open_.pop(p)
                rows.append((s, max(now, s + 1), p, v, k))
        elif t < VELOCITY:
            now += t - TIME_SHIFT + 1
        elif t < PAD:
            vel = 4 * (t - VELOCITY) + 2
    for p, (s, v, k) in open_.items():
        rows.append((s, max(now, s + 1), p, v, k))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
    order = np.lexsort((arr[:, 2], arr[:, 0]))
    arr = arr[order]
    notes = np.zeros(len(arr), dtype=NOTE_DTYPE)
    notes["onset"] = arr[:, 0] * TIME_STEP
    notes["offset"] = arr[:, 1] * TIME_STEP
    notes["pitch"] = arr[:, 2]
    notes["velocity"] = arr[:, 3]
    if return_on_index:
        return notes, arr[:, 4]
    return notes


def split_blocks(tokens, *, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a token stream into non-overlapping blocks of ``block`` tokens.

    Returns
    -------
    blocks : int64 array, shape (n_blocks, block); the last block PAD-padded
    mask : bool array, shape (n_blocks, block); True on real tokens
    starts : int64 array, shape (n_blocks,); token offset of each block
    An empty stream gives zero blocks.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    n = -(-len(tokens) // block)
    blocks = np.full((n, block), PAD, dtype=np.int64)
    mask = np.zeros((n, block), dtype=bool)
    for b in range(n):
        chunk = tokens[b * block : (b + 1) * block]
        blocks[b, : len(chunk)] = chunk
        mask[b, : len(chunk)] = True
    return blocks, mask, np.arange(n, dtype=np.int64) * block


def segment_notes(tokens, *, block: int) -> list[tuple[float, np.ndarray]]:
    """Notes of each block of a track: those whose NOTE_ON lies in the block.

    The whole track is decoded once (so velocity state and note-offs in later
    blocks are honoured); each block's notes are shifted so that time 0 is the
    block's start time.

    Returns
    -------
    list of ``(start_time_s, notes)``, one per block of :func:`split_blocks`.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    notes, on_index = decode(tokens, return_on_index=True)
    shift = np.where((tokens >= TIME_SHIFT) & (tokens < VELOCITY), tokens - TIME_SHIFT + 1, 0)
    time_before = np.concatenate([[0], np.cumsum(shift)]) * TIME_STEP  # time at token i
    out = []
    n_blocks = -(-len(tokens) // block)
    blk = on_index // block
    for b in range(n_blocks):
        t0 = float(time_before[b * block])
        sel = notes[blk == b].copy()
        sel["onset"] -= t0
        sel["offset"] -= t0
        out.append((t0, sel))
    return out
