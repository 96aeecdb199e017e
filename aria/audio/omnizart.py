"""Chord labels from Omnizart's chord model (``audio.features.chords: omnizart``), an optional
alternative to madmom's deep-chroma recognizer for the ``chords`` feature.

Omnizart (Wu et al., 2021; ``pip install omnizart``, which brings TensorFlow) transcribes chords
with its Harmony Transformer and writes, next to a MIDI rendering, a CSV of the chords it found:
a header ``chord,start,end`` and one row per chord, labels ``<root>:maj`` / ``<root>:min`` with
sharps (``C#:maj``), times in seconds; no-chord stretches are left out (its
``omnizart.chord.inference.write_csv``). :func:`segments_from_omnizart` turns those rows into
the segment table madmom's recognizer gives (``start``, ``end``, ``label``, the gaps filled
with ``'N'``), so :func:`aria.audio.features.chord_roots` and everything after it are the same
for both back ends.

Omnizart's checkpoints are not on PyPI; ``omnizart download-checkpoints`` fetches them, which
this offline machine cannot: give the chord checkpoint's folder as
``audio.features.omnizart_checkpoint``. The adapter is tested on a file in Omnizart's format
(``tests/data/omnizart_chord.csv``); the model itself was never run here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["SEGMENT_DTYPE", "segments_from_omnizart", "OmnizartChords", "CHORD_BACKENDS"]

CHORD_BACKENDS = ("madmom", "omnizart")
SEGMENT_DTYPE = [("start", np.float64), ("end", np.float64), ("label", object)]
INSTALL_HINT = (
    "pip install omnizart (the optional chord back end; it brings TensorFlow), then fetch its chord "
    "checkpoint on a machine with network access (omnizart download-checkpoints) and set "
    "audio.features.omnizart_checkpoint to that folder"
)


def segments_from_omnizart(rows, *, duration_s: float | None = None) -> np.ndarray:
    """Omnizart's chord rows as a madmom-style segment table.

    Parameters
    ----------
    rows : iterable of mapping
        Omnizart's ``info`` (its ``transcribe`` result, or its CSV read with
        :func:`aria.io.tables.read_omnizart_chords`): keys ``chord`` (e.g. ``'C#:min'``),
        ``start`` and ``end`` in seconds.
    duration_s : float, optional
        The signal's length; a final no-chord segment fills up to it.

    Returns
    -------
    numpy.ndarray, structured :data:`SEGMENT_DTYPE`, shape (n_segments,)
        In time order, contiguous from 0: Omnizart's chords, and ``'N'`` wherever it found
        none (before the first chord, between chords, after the last).

    Raises
    ------
    ValueError
        A row with ``end < start``, a negative time, or overlapping chords.
    """
    items = sorted(((float(r["start"]), float(r["end"]), str(r["chord"]).strip()) for r in rows), key=lambda x: x[0])
    out, t = [], 0.0
    for start, end, label in items:
        if start < 0 or end < start:
            raise ValueError(f"omnizart chord {label!r}: bad times start={start}, end={end}")
        if start < t - 1e-9:
            raise ValueError(f"omnizart chords overlap at {start:.3f} s ({label!r} starts before {t:.3f} s)")
        if start > t + 1e-9:
            out.append((t, start, "N"))
        out.append((start, end, label))
        t = end
    if duration_s is not None and duration_s > t + 1e-9:
        out.append((t, float(duration_s), "N"))
    seg = np.zeros(len(out), dtype=SEGMENT_DTYPE)
    for i, row in enumerate(out):
        seg[i] = row
    return seg


class OmnizartChords:
    """Omnizart's chord model as a chord recognizer: ``segments(y, sr)`` like madmom's.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        Folder of Omnizart's chord checkpoint (``omnizart download-checkpoints`` puts it in
        ``<site-packages>/omnizart/checkpoints/chord/chord_v1``).

    Raises
    ------
    RuntimeError
        ``omnizart`` is not installed, no checkpoint is given, or the folder does not exist;
        the message says how to get each.
    """

    def __init__(self, checkpoint):
        if not checkpoint:
            raise RuntimeError(
                f"audio.features.chords: omnizart needs audio.features.omnizart_checkpoint; {INSTALL_HINT}"
            )
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_dir():
            raise RuntimeError(
                f"audio.features.omnizart_checkpoint: {self.checkpoint} is not a folder (Omnizart's chord "
                f"checkpoint); {INSTALL_HINT}"
            )
        try:
            from omnizart.chord.app import ChordTranscription  # TensorFlow loads here
        except ImportError as e:
            raise RuntimeError(f"audio.features.chords: omnizart is not installed ({e}); {INSTALL_HINT}") from e
        self._app = ChordTranscription()

    def segments(self, y: np.ndarray, *, sr: int) -> np.ndarray:
        """Chord segments of a mono signal (written to a temporary WAV for Omnizart).

        Parameters
        ----------
        y : float array, shape (n_samples,)
            Mono audio.
        sr : int, keyword-only
            Sample rate of ``y`` (Hz).

        Returns
        -------
        numpy.ndarray, structured :data:`SEGMENT_DTYPE`, shape (n_segments,)
            As :func:`segments_from_omnizart`, filled with ``'N'`` up to ``n_samples / sr`` seconds.
        """
        from aria.io.audio import write_wav
        from aria.io.tables import read_omnizart_chords

        with tempfile.TemporaryDirectory(prefix="aria-omnizart-") as tmp:
            wav = Path(tmp) / "clip.wav"
            write_wav(wav, np.asarray(y, dtype=np.float32), sr)
            self._app.transcribe(os.fspath(wav), model_path=os.fspath(self.checkpoint), output=tmp)
            rows = read_omnizart_chords(Path(tmp) / "clip.csv")
        return segments_from_omnizart(rows, duration_s=len(y) / sr)
