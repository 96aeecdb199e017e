"""Performance-event tokenization (MusicTransformer style) and fixed-length segments.

Vocabulary (``VOCAB_SIZE`` = 389 ids)::

    0   .. 127   NOTE_ON  pitch
    128 .. 255   NOTE_OFF pitch
    256 .. 355   TIME_SHIFT of (id - 255) * 10 ms      (10 ms .. 1 s)
    356 .. 387   SET_VELOCITY bin (id - 356); velocity = 4 * bin + 2
    388          PAD (never predicted; masked out of every loss)

Times are quantized to ``TIME_STEP`` = 10 ms. All notes of all MIDI tracks are
merged into one stream (track identity is not tokenized).

This is the event vocabulary of Oore et al. and of dattri's MAESTRO MusicTransformer benchmark
(``dattri.benchmark.models.MusicTransformer``), whose ids 0..387 mean the same; dattri adds END =
388 and PAD = 389 (both skipped here, like Aria's PAD) and decodes a velocity bin to ``4 * bin``
instead of the bin's centre ``4 * bin + 2`` (``velocity_offset=0``, :data:`DATTRI_VELOCITY_OFFSET`).

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
    "track_segment_notes",
    "data_tokenizer",
    "DATTRI_VELOCITY_OFFSET",
]

NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = 0, 128, 256, 356
N_SHIFT, N_VEL = 100, 32
PAD = 388
VOCAB_SIZE = 389
TIME_STEP = 0.01
#: ``velocity_offset`` that decodes as dattri's MAESTRO processor does (velocity = 4 * bin).
DATTRI_VELOCITY_OFFSET = 0


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


def decode(tokens, *, return_on_index: bool = False, initial_velocity: int = 64, velocity_offset: int = 2):
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
    velocity_offset : int, keyword-only
        A SET_VELOCITY bin b decodes to velocity ``4 * b + velocity_offset`` (2: the bin's centre;
        0: dattri's MAESTRO processor).

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
            vel = 4 * (t - VELOCITY) + velocity_offset
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


def split_blocks(tokens, *, block: int, pad: int = PAD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    blocks = np.full((n, block), pad, dtype=np.int64)
    mask = np.zeros((n, block), dtype=bool)
    for b in range(n):
        chunk = tokens[b * block : (b + 1) * block]
        blocks[b, : len(chunk)] = chunk
        mask[b, : len(chunk)] = True
    return blocks, mask, np.arange(n, dtype=np.int64) * block


def segment_notes(tokens, *, block: int, starts=None, velocity_offset: int = 2) -> list[tuple[float, np.ndarray]]:
    """Notes of each block of a track: those whose NOTE_ON lies in the block.

    The whole track is decoded once (so velocity state and note-offs in later
    blocks are honoured); each block's notes are shifted so that time 0 is the
    block's start time.

    Parameters
    ----------
    tokens : int array, shape (L,)
        The track's whole token stream.
    block : int, keyword-only
        Tokens per block.
    starts : int array, shape (n_blocks,), keyword-only, optional
        Token offset of each block (default: the non-overlapping blocks of :func:`split_blocks`,
        ``0, block, 2 * block, ...``). Windows may overlap (dattri's MAESTRO windows of 257 tokens
        every 256): a note whose NOTE_ON lies in two windows belongs to both.
    velocity_offset : int, keyword-only
        See :func:`decode`.

    Returns
    -------
    list of ``(start_time_s, notes)``, one per block.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    notes, on_index = decode(tokens, return_on_index=True, velocity_offset=velocity_offset)
    shift = np.where((tokens >= TIME_SHIFT) & (tokens < VELOCITY), tokens - TIME_SHIFT + 1, 0)
    time_before = np.concatenate([[0], np.cumsum(shift)]) * TIME_STEP  # time at token i
    if starts is None:
        starts = np.arange(-(-len(tokens) // block), dtype=np.int64) * block
    out = []
    for s in np.asarray(starts, dtype=np.int64).tolist():
        t0 = float(time_before[min(s, len(tokens))])
        sel = notes[(on_index >= s) & (on_index < s + block)].copy()
        sel["onset"] -= t0
        sel["offset"] -= t0
        out.append((t0, sel))
    return out


def track_segment_notes(data, *, block: int):
    """Each training track's segments decoded to notes, from a segments file's arrays.

    Parameters
    ----------
    data : mapping
        The arrays of ``segments/<stage>/train.npz``: ``streams``, ``stream_offsets``,
        ``stream_tracks``, ``tempo_maps``, ``tempo_offsets`` and, where the segments are not
        :func:`split_blocks`' blocks, ``segment_starts`` (int, (N,): each segment's token offset
        in its track's stream, segments in track order) and ``segment_tokens`` (the window
        length); ``velocity_offset`` (scalar, default 2: :func:`decode`); ``tokenizer`` (a JSON
        string of config ``tokenizer``: the segments of a miditok tokenizer,
        :mod:`aria.symbolic.tokenizers`; default Aria's vocabulary).
    block : int, keyword-only
        Tokens per segment when the file has no ``segment_tokens``.

    Yields
    ------
    (track_id, stream, tempo_map, segments)
        ``segments`` is :func:`segment_notes`' list for that track.
    """
    length = int(data["segment_tokens"]) if "segment_tokens" in data else block
    tok = data_tokenizer(data)
    starts = data["segment_starts"] if "segment_starts" in data else None
    seg_track = None
    if starts is not None:
        seg_track = np.asarray(data["track_ids"]).astype(str)
    for i, tid in enumerate(np.asarray(data["stream_tracks"]).astype(str)):
        stream = data["streams"][data["stream_offsets"][i] : data["stream_offsets"][i + 1]]
        tempo = data["tempo_maps"][data["tempo_offsets"][i] : data["tempo_offsets"][i + 1]]
        mine = None if starts is None else starts[seg_track == tid]
        yield tid, stream, tempo, tok.segment_notes(stream, block=length, starts=mine)


def data_tokenizer(data):
    """The tokenizer of a segments or prompts file: its ``tokenizer`` JSON string, else Aria's
    vocabulary with the file's ``velocity_offset`` (default 2).
    """
    import json

    from aria.symbolic.tokenizers import AriaTokenizer, load_tokenizer

    if "tokenizer" in data:
        return load_tokenizer(json.loads(str(data["tokenizer"])))
    return AriaTokenizer(velocity_offset=int(data["velocity_offset"]) if "velocity_offset" in data else 2)
