"""The symbolic experiment's tokenizer: Aria's performance events or a miditok tokenizer.

Config ``tokenizer: {kind: aria}`` (the default) is :mod:`aria.symbolic.tokenize`'s vocabulary;
``tokenizer: {kind: miditok, path: tokenizer.json}`` is a tokenizer that miditok saved
(``tokenizer.save(path)``: REMI, TSD, MIDILike, Structured, ...), read offline. Both answer the
same questions, so segments, queries, training and the channel features do not depend on which:

- ``encode_file(path)``: a MIDI file's token ids (int64, (L,)), one stream per piece. miditok
  reads the file with symusic, its own parser; a tokenizer without ``one_token_stream`` gets the
  piece's tracks merged into one (drums left out), as Aria's own vocabulary merges them.
- ``decode(ids)``: the notes (:data:`aria.symbolic.notes.NOTE_DTYPE`, seconds). miditok's
  decoder places notes on its beat grid at the tokens' tempo (120 BPM without tempo tokens: the
  model never sees the file's tempo), so the features read the timeline the model saw.
- ``segment_notes(stream, block=, starts=)``: each block's notes, time 0 at the block's start.
  miditok's tokens give no time per token, so a block's notes are those that decoding the
  stream up to the block's end adds to decoding it up to the block's start: put back together,
  the blocks give exactly the whole stream's decode.
- ``vocab_size`` and ``pad`` (never a target, never sampled).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from aria.symbolic.notes import DEFAULT_TEMPO_MAP, NOTE_DTYPE

__all__ = ["KINDS", "AriaTokenizer", "MiditokTokenizer", "load_tokenizer"]

#: ``tokenizer.kind`` values.
KINDS = ("aria", "miditok")


class AriaTokenizer:
    """Aria's performance-event vocabulary (:mod:`aria.symbolic.tokenize`); ``velocity_offset``: see
    :func:`aria.symbolic.tokenize.decode` (0 decodes as dattri's MAESTRO processor does).
    """

    kind = "aria"

    def __init__(self, *, velocity_offset: int = 2):
        from aria.symbolic import tokenize

        self._t, self.velocity_offset = tokenize, int(velocity_offset)
        self.vocab_size, self.pad = tokenize.VOCAB_SIZE, tokenize.PAD

    def encode_file(self, path) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, tempo_map)`` of a MIDI file (:func:`aria.io.midi.read_midi`)."""
        from aria.io.midi import read_midi

        notes, tempo = read_midi(path)
        return self._t.encode(notes), np.asarray(tempo, dtype=float)

    def decode(self, ids) -> np.ndarray:
        """Notes of ``ids`` (PAD skipped)."""
        return self._t.decode(ids, velocity_offset=self.velocity_offset)

    def segment_notes(self, stream, *, block: int, starts=None) -> list[tuple[float, np.ndarray]]:
        """:func:`aria.symbolic.tokenize.segment_notes`."""
        return self._t.segment_notes(stream, block=block, starts=starts, velocity_offset=self.velocity_offset)


class MiditokTokenizer:
    """A tokenizer saved by miditok (its ``tokenization`` class and config), read from ``path``.

    Raises
    ------
    ValueError
        Naming the file, when it is missing or not a miditok tokenizer file.
    """

    kind = "miditok"

    def __init__(self, path):
        import miditok

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: miditok tokenizer file not found (save one with tokenizer.save(path))")
        try:
            name = json.loads(path.read_text())["tokenization"]
            self.tok = getattr(miditok, name)(params=path)
        except (KeyError, AttributeError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: not a miditok tokenizer file ({type(e).__name__}: {e})") from e
        self.path = str(path)
        self.vocab_size, self.pad = int(len(self.tok)), int(self.tok.pad_token_id)

    def _score(self, path):
        import symusic

        try:
            score = symusic.Score(str(path))
        except Exception as e:  # noqa: BLE001 - symusic raises its own errors: name the file
            raise ValueError(f"{path}: cannot parse MIDI file: {type(e).__name__}: {e}") from None
        if not self.tok.one_token_stream:  # one stream per piece: the tracks merged, as Aria's vocabulary does
            merged = symusic.Track(program=0)
            for tr in score.tracks:
                if not tr.is_drum:
                    merged.notes.extend(tr.notes)
            merged.notes.sort(key=lambda n: (n.time, n.pitch))
            score.tracks = [merged]
        if not sum(len(t.notes) for t in score.tracks):
            raise ValueError(f"{path}: no notes (drums only or empty)")
        return score

    def encode_file(self, path) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, tempo_map)``: the piece's token ids (one stream) and the tempo of its decode."""
        seq = self.tok.encode(self._score(path))
        if isinstance(seq, list):
            seq = seq[0]
        return np.asarray(seq.ids, dtype=np.int64), DEFAULT_TEMPO_MAP.copy()

    def decode(self, ids) -> np.ndarray:
        """Notes of ``ids`` (PAD and special tokens skipped), seconds at the tokens' tempo."""
        ids = [int(i) for i in np.asarray(ids).tolist() if int(i) != self.pad]
        out = np.zeros(0, dtype=NOTE_DTYPE)
        if not ids:
            return out
        score = self.tok.decode([ids] if not self.tok.one_token_stream else ids).to("second")
        rows = [
            (n.time, n.time + n.duration, n.pitch, n.velocity, k) for k, t in enumerate(score.tracks) for n in t.notes
        ]
        if not rows:
            return out
        out = np.zeros(len(rows), dtype=NOTE_DTYPE)
        for name, col in zip(NOTE_DTYPE.names, zip(*rows)):
            out[name] = col
        return out[np.lexsort((out["track"], out["pitch"], out["onset"]))]

    def segment_notes(self, stream, *, block: int, starts=None) -> list[tuple[float, np.ndarray]]:
        """Each block's notes: what decoding up to its end adds to decoding up to its start."""
        stream = np.asarray(stream, dtype=np.int64)
        if starts is None:
            starts = np.arange(-(-len(stream) // block), dtype=np.int64) * block
        out, t_prev = [], 0.0
        for s in np.asarray(starts, dtype=np.int64).tolist():
            before = Counter(map(tuple, self.decode(stream[:s]).tolist()))
            notes = []
            for n in map(tuple, self.decode(stream[: s + block]).tolist()):
                if before[n] > 0:  # decoded before the block already
                    before[n] -= 1
                else:
                    notes.append(n)
            sel = np.array(notes, dtype=NOTE_DTYPE) if notes else np.zeros(0, dtype=NOTE_DTYPE)
            t0 = float(sel["onset"].min()) if len(sel) else t_prev
            sel["onset"] -= t0
            sel["offset"] -= t0
            out.append((t0, sel))
            t_prev = t0
        return out


def load_tokenizer(settings: dict | None):
    """The tokenizer of config ``tokenizer`` (None or ``{kind: aria}``: Aria's own)."""
    settings = settings or {}
    kind = settings.get("kind", "aria")
    if kind == "aria":
        return AriaTokenizer()
    if kind == "miditok":
        return MiditokTokenizer(settings["path"])
    raise ValueError(f"tokenizer.kind must be one of {KINDS}, got {kind!r}")
