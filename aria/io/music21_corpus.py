"""Reading pieces from music21's bundled corpus (the embedded demo's source).

Collections used, their sources and licences (see README "Demo corpus"):

- ``bach_chorales``: J. S. Bach's four-part chorales (music21 core corpus).
- ``ryans_mammoth``: Ryan's Mammoth Collection (1883), ABC transcriptions.
- ``oneills_1850``: O'Neill's Music of Ireland (1903), ABC transcriptions.
- ``monteverdi``: Monteverdi madrigals, books 3-5, encoded by the music21 project.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["COLLECTIONS", "iter_pieces"]

COLLECTIONS = {
    "bach_chorales": ("bach", ".mxl"),
    "ryans_mammoth": ("ryansMammoth", ".abc"),
    "oneills_1850": ("oneills1850", ".abc"),
    "monteverdi": ("monteverdi", ".mxl"),
}
OPUS_COLLECTIONS = {"oneills_1850"}  # many tunes per file


def iter_pieces(collection: str, *, random_state):
    """Yield ``(source_id, load)`` for a collection's pieces in a seeded random order.

    ``load()`` parses the piece and returns ``(notes, tempo_map)``; it raises
    whatever music21 raises for pieces that do not parse or expand, and the
    caller logs and skips them. Opus files (many tunes per file) are visited
    file by file, in random order, so each is parsed once.
    """
    from music21 import corpus

    folder, ext = COLLECTIONS[collection]
    rng = np.random.default_rng(random_state)
    paths = sorted(str(p).split("/corpus/")[-1] for p in corpus.getComposer(folder)
                   if str(p).endswith(ext))
    for fi in rng.permutation(len(paths)):
        path = paths[fi]
        if collection not in OPUS_COLLECTIONS:
            yield path, (lambda path=path: _score_notes(corpus.parse(path)))
            continue
        try:
            scores = list(corpus.parse(path).scores)
        except Exception as e:  # noqa: BLE001 - a broken opus file is skipped whole
            yield path, (lambda e=e: (_ for _ in ()).throw(e))
            continue
        for i in rng.permutation(len(scores)):
            yield f"{path}#{i}", (lambda sc=scores[i]: _score_notes(sc))


def _score_notes(score):
    """Expand repeats, render to MIDI with music21, read back as (notes, tempo_map)."""
    from music21.midi import translate

    from aria.io.midi import read_midi

    score = score.expandRepeats()
    mf = translate.streamToMidiFile(score)
    with tempfile.TemporaryDirectory() as tmp:
        fn = Path(tmp) / "piece.mid"
        mf.open(str(fn), "wb")
        mf.write()
        mf.close()
        notes, tempo_map = read_midi(fn)
    return notes, np.asarray(tempo_map, dtype=float)
