"""Reading pieces from music21's bundled corpus (the embedded demo's source).

Collections used, their sources and licences (see docs/methods.md "The embedded demo corpus"):

- ``bach_chorales``: J. S. Bach's four-part chorales (music21 core corpus).
- ``ryans_mammoth``: Ryan's Mammoth Collection (1883), ABC transcriptions.
- ``oneills_1850``: O'Neill's Music of Ireland (1903), ABC transcriptions.
- ``monteverdi``: Monteverdi madrigals, books 3-5, encoded by the music21 project.

The second corpus (``profiles/corpus2/``: the validation and the benchmark run again on music
that shares no collection with the demo, so that no threshold is tuned to one corpus):

- ``airds_airs``: James Aird's *Selection of Scotch, English, Irish and Foreign Airs*
  (1782-1803), ABC transcriptions, many tunes per file.
- ``essen_folksong``: the Essen folksong collection, German and other European tunes,
  monophonic (ABC transcriptions, many tunes per file).
- ``trecento``: fourteenth-century Italian polyphony, two and three voices (MusicXML, music21).

music21 also bundles Palestrina's masses, but their Humdrum encodings reserve all derivative
electronic formats to a licensing agreement, so they are not offered here.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["COLLECTIONS", "iter_pieces"]

COLLECTIONS = {
    "bach_chorales": ("bach", ".mxl"),
    "ryans_mammoth": ("ryansMammoth", ".abc"),
    "oneills_1850": ("oneills1850", ".abc"),
    "monteverdi": ("monteverdi", ".mxl"),
    "airds_airs": ("airdsAirs", ".abc"),
    "essen_folksong": ("essenFolksong", ".abc"),
    "trecento": ("trecento", ".xml"),
}
OPUS_COLLECTIONS = {"oneills_1850", "airds_airs", "essen_folksong"}  # many tunes per file


def iter_pieces(collection: str, *, random_state, max_quarters: float = float("inf")):
    """Yield ``(source_id, load)`` for a collection's pieces in a seeded random order.

    ``load()`` parses the piece and returns ``(notes, tempo_map)``; it raises
    whatever music21 raises for pieces that do not parse or expand, and the
    caller logs and skips them. After repeats are expanded, measures starting
    at or after ``max_quarters`` quarter notes are dropped before rendering
    (rendering long expanded tunes to MIDI is what costs time). Opus files (many tunes per file) are visited
    file by file, in random order, each tune parsed on its own (``path#X<n>``).

    ``random_state`` (int, sequence of int or numpy Generator) seeds ``np.random.default_rng``,
    which permutes the files and, within an opus, its tunes.
    """
    from music21 import corpus

    folder, ext = COLLECTIONS[collection]
    rng = np.random.default_rng(random_state)
    paths = sorted(str(p).split("/corpus/")[-1] for p in corpus.getComposer(folder) if str(p).endswith(ext))
    for fi in rng.permutation(len(paths)):
        path = paths[fi]
        if collection not in OPUS_COLLECTIONS:
            yield path, (lambda path=path: _score_notes(corpus.parse(path), max_quarters))
            continue
        # Parse one tune at a time (ABC ``X:`` reference numbers): a tune taken out
        # of a parsed opus drags the whole opus through every deepcopy.
        text = Path(corpus.getWork(path)).read_text(encoding="latin-1")
        numbers = [int(x) for x in re.findall(r"^X:\s*(\d+)", text, flags=re.M)]
        for i in rng.permutation(len(numbers)):
            num = numbers[i]
            yield (
                f"{path}#X{num}",
                (lambda path=path, num=num: _score_notes(corpus.parse(path, number=num), max_quarters)),
            )


def _has_repeats(score) -> bool:
    """Whether a score holds anything ``expandRepeats`` acts on: repeat barlines,
    repeat expressions (D.C., segno, coda...) or first/second-ending brackets.

    Without them ``expandRepeats`` only deep-copies the score (most of the demo
    corpus's build time for the madrigals); the rendered notes are the same.
    """
    from music21 import bar, repeat, spanner

    for e in score.recurse():
        if isinstance(e, (bar.Repeat, repeat.RepeatMark, spanner.RepeatBracket)):
            return True
    return False


def _score_notes(score, max_quarters: float = float("inf")):
    """Expand repeats, drop measures from ``max_quarters`` on, render to MIDI, read back."""
    from music21.midi import translate

    from aria.io.midi import read_midi

    if _has_repeats(score) or not all(p.hasMeasures() for p in score.parts):
        score = score.expandRepeats()  # deep-copies every element; raises for parts without measures
    if score.highestTime > max_quarters:
        last = None
        for m in score.parts[0].getElementsByClass("Measure"):
            if m.offset >= max_quarters:
                break
            last = m.number
        if last is not None:
            score = score.measures(0, last)
    mf = translate.streamToMidiFile(score)
    with tempfile.TemporaryDirectory() as tmp:
        fn = Path(tmp) / "piece.mid"
        mf.open(str(fn), "wb")
        mf.write()
        mf.close()
        notes, tempo_map = read_midi(fn)
    return notes, np.asarray(tempo_map, dtype=float)
