"""The audio evidence-channel features of docs/spec.md §5, from audio files or arrays.

Features (float64 vectors unless noted; dims at the default options):

beat_interval_hist (16)
    Beats from BeatNet (model 1, GTZAN-trained CRNN) in offline mode with
    madmom's DBN downbeat decoder (``inference_model='DBN'``, 50 frames/s,
    bars of 2, 3 or 4 beats). Intervals between consecutive beat times in
    seconds, binned by :func:`interval_histogram` into 16 uniform bins over
    [0.2, 2.0] s; L1. All zeros with fewer than 2 beats.
onset_interval_hist (16)
    Onsets from ``librosa.onset.onset_detect(y, sr, hop_length=512,
    units='time')``; intervals binned the same way over [0.0, 1.0] s; L1.
chroma (12)
    ``librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=512)`` mean over frames.
tonnetz (6)
    ``librosa.feature.tonnetz(chroma=<that chroma matrix>)`` mean over frames.
chords (variable length, int64)
    Chord root pitch class (0 = C ... 11 = B) of each segment of madmom's
    deep-chroma chord recognizer (``DeepChromaProcessor`` +
    ``DeepChromaChordRecognitionProcessor``: major/minor/no-chord, 10 frames/s,
    CRF decoding), in time order; -1 for a no-chord ('N'/'X') segment.
    Consecutive segments are distinct labels, but two segments can share a
    root (e.g. C:maj then C:min). Use :func:`chord_root_motion` for the
    transposition-invariant root-motion sequence of the docs/spec.md §5 similarity.
mfcc (26)
    ``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13)``: 13 frame means, then 13
    frame standard deviations (population, ddof=0).
cqt (168)
    ``librosa.amplitude_to_db(abs(librosa.cqt(y=y, sr=sr, hop_length=512,
    n_bins=84, bins_per_octave=12)), ref=np.max)`` (dB relative to the track's
    loudest CQT bin, floored at -80 dB): 84 frame means, then 84 frame stds.

Sample rates: librosa features run at ``sr`` (default 22050 Hz). BeatNet's
network is trained on 22050 Hz input and madmom's deep-chroma network on
44100 Hz input, so the signal is resampled (``librosa.resample``, soxr_hq) to
those rates for the two neural models when ``sr`` differs. Arrays are always
handed to madmom/BeatNet (never paths: madmom's own file loader rejects float
WAVs and would need ffmpeg to resample).

Processors: the BeatNet model and madmom's networks are built by
:func:`build_processors` and passed explicitly (no module-level cache).
:func:`extract_many` builds them once per call, i.e. once per shard.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aria.audio.signal import resample
from aria.io.audio import SILENCE_FRAME_S, SILENCE_THRESHOLD_DB, is_silent, load_audio
from aria.runtime import progress as track_progress

__all__ = [
    "FEATURE_DIMS",
    "FEATURE_NAMES",
    "VECTOR_FEATURES",
    "SEQUENCE_FEATURES",
    "CHANNELS",
    "AudioProcessors",
    "build_processors",
    "extract",
    "extract_many",
    "interval_histogram",
    "beat_times",
    "onset_times",
    "chord_segments",
    "chord_roots",
    "parse_chord_root",
    "chord_root_motion",
]

#: Sample rate BeatNet's CRNN expects (Hz).
BEATNET_SR = 22050
#: Sample rate madmom's deep-chroma network expects (Hz).
DEEP_CHROMA_SR = 44100

#: Dimension of each fixed-length feature at the default options. ``chords``
#: is a variable-length sequence and has no entry (see SEQUENCE_FEATURES).
FEATURE_DIMS: dict[str, int] = {
    "beat_interval_hist": 16,
    "onset_interval_hist": 16,
    "chroma": 12,
    "tonnetz": 6,
    "mfcc": 26,
    "cqt": 168,
}
#: Fixed-length (vector) features, in :data:`FEATURE_NAMES` order.
VECTOR_FEATURES: tuple[str, ...] = tuple(FEATURE_DIMS)
#: Variable-length features (int64 sequences).
SEQUENCE_FEATURES: tuple[str, ...] = ("chords",)
#: All keys returned by :func:`extract`, in channel order.
FEATURE_NAMES: tuple[str, ...] = (
    "beat_interval_hist",
    "onset_interval_hist",
    "chroma",
    "tonnetz",
    "chords",
    "mfcc",
    "cqt",
)
#: The three audio evidence channels (docs/spec.md §5).
CHANNELS: dict[str, list[str]] = {
    "rhythmic": ["beat_interval_hist", "onset_interval_hist"],
    "harmonic": ["chroma", "tonnetz", "chords"],
    "timbral": ["mfcc", "cqt"],
}


# --------------------------------------------------------------------------- helpers
def interval_histogram(times, *, lo: float, hi: float, n_bins: int = 16) -> np.ndarray:
    """L1-normalized histogram of intervals between consecutive event times.

    Parameters
    ----------
    times : array_like of float, shape (n,)
        Event times in seconds (sorted here; duplicates give 0 s intervals).
    lo, hi : float
        Range of the bins in seconds, ``lo < hi``.
    n_bins : int, default 16
        Number of uniform bins.

    Returns
    -------
    hist : numpy.ndarray of float64, shape (n_bins,)
        With ``edges = numpy.linspace(lo, hi, n_bins + 1)``, bin i counts the
        intervals d with ``edges[i] <= d < edges[i+1]``; intervals below ``lo``
        are clipped into bin 0 and intervals ``>= hi`` into bin ``n_bins - 1``
        (so d = hi lands in the last bin). Normalized to sum 1; all zeros when
        there are fewer than 2 events.
    """
    if not hi > lo:
        raise ValueError(f"interval_histogram: need lo < hi, got lo={lo}, hi={hi}")
    if int(n_bins) < 1:
        raise ValueError(f"interval_histogram: n_bins must be >= 1, got {n_bins}")
    n_bins = int(n_bins)
    t = np.sort(np.asarray(times, dtype=np.float64).reshape(-1))
    if not np.all(np.isfinite(t)):
        raise ValueError("interval_histogram: event times must be finite")
    hist = np.zeros(n_bins, dtype=np.float64)
    if t.size < 2:
        return hist
    d = np.diff(t)
    edges = np.linspace(lo, hi, n_bins + 1)
    idx = np.searchsorted(edges[1:-1], d, side="right")  # in 0..n_bins-1: clipping built in
    np.add.at(hist, idx, 1.0)
    return hist / hist.sum()


_ROOT_RE = re.compile(r"^([A-Ga-g])([#b]*)")
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_chord_root(label: str) -> int:
    """Root pitch class of a chord label (Harte syntax as written by madmom).

    Parameters
    ----------
    label : str
        E.g. ``'C:maj'``, ``'A:min'``, ``'F#:maj'``, ``'Bb:min7'``, ``'G'``,
        or ``'N'`` / ``'X'`` (no chord / unknown).

    Returns
    -------
    int
        0 (C) ... 11 (B); -1 for no-chord labels.
    """
    s = str(label).strip()
    if s in {"", "N", "X"}:
        return -1
    m = _ROOT_RE.match(s)
    if m is None or (len(s) > m.end() and s[m.end()] not in ":/("):
        raise ValueError(f"unparseable chord label {label!r}")
    pc = _NATURAL[m.group(1).upper()] + m.group(2).count("#") - m.group(2).count("b")
    return pc % 12


def chord_root_motion(roots) -> np.ndarray:
    """Transposition-invariant root-motion intervals of a chord-root sequence (docs/spec.md §5 chord similarity).

    Parameters
    ----------
    roots : array_like of int, shape (n,)
        Chord root pitch classes per frame/segment (0 = C ... 11 = B; values
        >= 12 are reduced mod 12). Negative values mean "no chord".

    Returns
    -------
    motion : ndarray of int64, shape (m,)
        ``(r_{k+1} - r_k) mod 12`` over the root sequence after dropping
        no-chord entries and *then* merging consecutive repeats (so a no-chord
        gap inside a sustained chord, C N C, counts as one C and never creates
        a spurious 0 interval). Consequently every interval is in 1..11.
        Empty when fewer than two distinct consecutive roots remain.

    Examples
    --------
    >>> chord_root_motion([0, 7, 9, 5]).tolist()   # C G Am F
    [7, 2, 8]
    """
    r = np.asarray(roots).reshape(-1)
    if r.size and not np.issubdtype(r.dtype, np.integer):
        if not np.all(np.isfinite(r)) or not np.all(r == np.round(r)):
            raise ValueError("chord_root_motion: roots must be integers (negative = no chord)")
    r = r.astype(np.int64)
    r = r[r >= 0] % 12
    if r.size:
        r = r[np.concatenate(([True], r[1:] != r[:-1]))]
    return np.diff(r) % 12


# --------------------------------------------------------------------------- processors
@dataclass
class AudioProcessors:
    """The pretrained models used by :func:`extract`, built once and reused.

    Attributes
    ----------
    beatnet : BeatNet.BeatNet.BeatNet
        BeatNet in offline mode with the DBN decoder.
    deep_chroma : madmom.audio.chroma.DeepChromaProcessor
        Deep chroma network (expects 44.1 kHz mono arrays).
    chord_decoder : madmom.features.chords.DeepChromaChordRecognitionProcessor
        CRF chord decoder over the deep chroma (10 frames/s).
    """

    beatnet: Any
    deep_chroma: Any
    chord_decoder: Any
    omnizart: Any = None  # aria.audio.omnizart.OmnizartChords when audio.features.chords is omnizart


def build_processors(
    *, beatnet_model: int = 1, chords: str = "madmom", omnizart_checkpoint: str | None = None
) -> AudioProcessors:
    """Build the BeatNet and madmom chord processors (CPU, offline weights).

    Parameters
    ----------
    beatnet_model : {1, 2, 3}, default 1
        BeatNet's pretrained CRNN: 1 = GTZAN-trained (default), 2 = Ballroom,
        3 = Rock corpus.
    chords : {"madmom", "omnizart"}, default "madmom"
        The chord recognizer of the ``chords`` feature (:mod:`aria.audio.omnizart`).
    omnizart_checkpoint : str, optional
        Omnizart's chord checkpoint folder (needed with ``chords="omnizart"``).

    Returns
    -------
    AudioProcessors
    """
    from aria.audio._compat import ensure_madmom, import_beatnet

    BeatNet = import_beatnet()
    ensure_madmom()
    from madmom.audio.chroma import DeepChromaProcessor
    from madmom.features.chords import DeepChromaChordRecognitionProcessor

    from aria.audio.omnizart import CHORD_BACKENDS, OmnizartChords

    if chords not in CHORD_BACKENDS:
        raise ValueError(f"audio.features.chords must be one of {CHORD_BACKENDS}, got {chords!r}")
    omni = OmnizartChords(omnizart_checkpoint) if chords == "omnizart" else None  # fails early, clearly
    return AudioProcessors(
        beatnet=BeatNet(beatnet_model, mode="offline", inference_model="DBN", plot=[], thread=False, device="cpu"),
        deep_chroma=DeepChromaProcessor(),
        chord_decoder=DeepChromaChordRecognitionProcessor(),
        omnizart=omni,
    )


def beat_times(y: np.ndarray, *, sr: int, processors: AudioProcessors) -> np.ndarray:
    """Beat times from BeatNet offline (DBN).

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
        Mono signal at ``sr`` Hz (resampled to 22050 Hz for BeatNet if needed).
    sr : int
        Sample rate of ``y`` in Hz.
    processors : AudioProcessors

    Returns
    -------
    numpy.ndarray of float64, shape (n_beats,)
        Beat times in seconds (50 frames/s resolution), ascending.

    Notes
    -----
    BeatNet's CRNN carries its LSTM state (``model.hidden``, ``model.cell``)
    from one call to the next; it is reset to zeros before every signal so
    results do not depend on what was processed before.
    """
    import torch

    bn = processors.beatnet
    x = np.ascontiguousarray(resample(np.asarray(y, dtype=np.float32), sr, BEATNET_SR), dtype=np.float32)
    bn.model.hidden = torch.zeros_like(bn.model.hidden)
    bn.model.cell = torch.zeros_like(bn.model.cell)
    out = bn.process(x)
    out = np.asarray(out, dtype=np.float64).reshape(-1, 2) if np.size(out) else np.zeros((0, 2))
    return np.sort(out[:, 0])


def onset_times(y: np.ndarray, *, sr: int, hop_length: int = 512) -> np.ndarray:
    """Onset times from ``librosa.onset.onset_detect`` (default peak picking).

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
        Mono signal at ``sr`` Hz.
    sr : int
        Sample rate in Hz.
    hop_length : int, default 512
        Onset-envelope hop in samples (time resolution ``hop_length / sr`` s).

    Returns
    -------
    numpy.ndarray of float64, shape (n_onsets,)
        Onset times in seconds, ascending.
    """
    import librosa

    t = librosa.onset.onset_detect(y=np.asarray(y, dtype=np.float32), sr=sr, hop_length=hop_length, units="time")
    return np.asarray(t, dtype=np.float64)


def chord_segments(y: np.ndarray, *, sr: int, processors: AudioProcessors) -> np.ndarray:
    """Chord segments from madmom's deep-chroma chord recognizer (or Omnizart's, when the
    processors were built with ``chords="omnizart"``).

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
        Mono signal at ``sr`` Hz (resampled to 44100 Hz for the network).
    sr : int
        Sample rate in Hz.
    processors : AudioProcessors

    Returns
    -------
    numpy.ndarray, structured, shape (n_segments,)
        Fields ``start``, ``end`` (seconds, float64) and ``label`` (str such
        as ``'C:maj'``, ``'A:min'``, ``'N'``), in time order. Empty when the
        signal yields fewer than 2 chroma frames (shorter than about 0.15 s).
    """
    if getattr(processors, "omnizart", None) is not None:  # audio.features.chords: omnizart
        return processors.omnizart.segments(y, sr=sr)
    x = np.ascontiguousarray(resample(np.asarray(y, dtype=np.float32), sr, DEEP_CHROMA_SR), dtype=np.float32)
    with warnings.catch_warnings():
        # madmom 0.17's ReLU calls np.maximum(x, 0, out) (positional out), deprecated in numpy 2.4
        warnings.filterwarnings(
            "ignore", message="Passing more than 2 positional arguments to np.maximum", category=DeprecationWarning
        )
        chroma = processors.deep_chroma(x)
    if len(chroma) < 2:  # madmom's CRF Viterbi fails on a single frame (< ~0.15 s of audio)
        return np.zeros(0, dtype=[("start", np.float64), ("end", np.float64), ("label", object)])
    return processors.chord_decoder(chroma)


def chord_roots(y: np.ndarray, *, sr: int, processors: AudioProcessors) -> np.ndarray:
    """Chord-root sequence: :func:`parse_chord_root` of each :func:`chord_segments` label.

    Returns
    -------
    numpy.ndarray of int64, shape (n_segments,)
        Roots 0..11 in time order, -1 for no-chord segments.
    """
    segs = chord_segments(y, sr=sr, processors=processors)
    return np.array([parse_chord_root(lab) for lab in segs["label"]], dtype=np.int64)


# --------------------------------------------------------------------------- extraction
def _as_signal(path_or_array, sr: int) -> tuple[np.ndarray, str]:
    if isinstance(path_or_array, (str, os.PathLike)):
        name = os.fspath(path_or_array)
        return load_audio(name, sr=sr, mono=True), name
    y = np.asarray(path_or_array)
    name = f"<array shape={y.shape}>"
    if y.ndim == 2:
        y = y.mean(axis=0)  # (channels, n) -> mono, librosa's layout
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D or (channels, n) signal")
    if not np.issubdtype(y.dtype, np.floating):
        raise ValueError(f"{name}: expected float samples in full-scale units, got {y.dtype}")
    if y.size == 0:
        raise ValueError(f"{name}: zero samples")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name}: non-finite (NaN/inf) samples")
    return np.ascontiguousarray(y, dtype=np.float32), name


def extract(
    path_or_array,
    *,
    sr: int = 22050,
    processors: AudioProcessors | None = None,
    beat_range: tuple[float, float] = (0.2, 2.0),
    onset_range: tuple[float, float] = (0.0, 1.0),
    n_interval_bins: int = 16,
    hop_length: int = 512,
    n_mfcc: int = 13,
    n_cqt_bins: int = 84,
    cqt_bins_per_octave: int = 12,
    silence_threshold_db: float = SILENCE_THRESHOLD_DB,
    min_duration_s: float = 1.0,
) -> dict[str, np.ndarray]:
    """All audio features of one track (see the module docstring).

    Parameters
    ----------
    path_or_array : str, os.PathLike or numpy.ndarray
        An audio file (read with :func:`aria.io.audio.load_audio` at ``sr``,
        mono) or a float signal of shape (n,) or (channels, n) at ``sr`` Hz in
        full-scale units.
    sr : int, default 22050
        Analysis sample rate in Hz.
    processors : AudioProcessors, optional
        Pretrained models from :func:`build_processors`; built for this call
        when omitted (pass one in to process many tracks).
    beat_range, onset_range : (float, float)
        Histogram ranges in seconds (defaults 0.2-2.0 s and 0-1.0 s).
    n_interval_bins : int, default 16
        Bins of both interval histograms.
    hop_length : int, default 512
        Hop in samples for onsets, chroma_cqt and CQT.
    n_mfcc : int, default 13
    n_cqt_bins, cqt_bins_per_octave : int, default 84 and 12
        CQT size (7 octaves from C1 at the defaults).
    silence_threshold_db : float, default -60.0
        A signal whose every 50 ms frame is below this RMS level (dBFS) is
        rejected (see :func:`aria.io.audio.is_silent`).
    min_duration_s : float, default 1.0
        Shorter signals are rejected (the 84-bin CQT's lowest filters and the
        neural models need context; sub-second "tracks" carry no rhythm).

    Returns
    -------
    dict[str, numpy.ndarray]
        Keys :data:`FEATURE_NAMES`. Vector features are float64 with shapes
        ``(FEATURE_DIMS[key],)`` at the default options; ``chords`` is an
        int64 array of shape (n_segments,).

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Naming the file: unreadable/corrupt/truncated/empty file, non-finite
        samples, a signal shorter than ``min_duration_s``, an all-silent
        signal, or features that came out non-finite.
    """
    import librosa

    y, name = _as_signal(path_or_array, sr)
    if y.shape[0] < min_duration_s * sr:
        raise ValueError(f"{name}: too short ({y.shape[0] / sr:.3f} s < {min_duration_s} s)")
    if is_silent(y, sr=sr, threshold_db=silence_threshold_db):
        raise ValueError(
            f"{name}: silent audio (every {SILENCE_FRAME_S * 1000:.0f} ms frame below {silence_threshold_db} dBFS RMS)"
        )
    if processors is None:
        processors = build_processors()

    feats: dict[str, np.ndarray] = {}
    feats["beat_interval_hist"] = interval_histogram(
        beat_times(y, sr=sr, processors=processors), lo=beat_range[0], hi=beat_range[1], n_bins=n_interval_bins
    )
    feats["onset_interval_hist"] = interval_histogram(
        onset_times(y, sr=sr, hop_length=hop_length), lo=onset_range[0], hi=onset_range[1], n_bins=n_interval_bins
    )

    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=hop_length)
    feats["chroma"] = chroma.mean(axis=1).astype(np.float64)
    feats["tonnetz"] = librosa.feature.tonnetz(chroma=chroma).mean(axis=1).astype(np.float64)
    feats["chords"] = chord_roots(y, sr=sr, processors=processors)

    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc)
    feats["mfcc"] = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]).astype(np.float64)
    C = np.abs(librosa.cqt(y=y, sr=sr, hop_length=hop_length, n_bins=n_cqt_bins, bins_per_octave=cqt_bins_per_octave))
    cdb = librosa.amplitude_to_db(C, ref=np.max)
    feats["cqt"] = np.concatenate([cdb.mean(axis=1), cdb.std(axis=1)]).astype(np.float64)

    for key in VECTOR_FEATURES:
        if not np.all(np.isfinite(feats[key])):
            raise ValueError(f"{name}: feature {key} is not finite")
    return {k: feats[k] for k in FEATURE_NAMES}


def extract_many(
    paths: Iterable, *, sr: int = 22050, progress: bool = True, processors: AudioProcessors | None = None, **options
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Features of a shard of audio files in one process, skipping bad files.

    The pretrained models are built once (unless ``processors`` is given) and
    shared by all files, so imports and model loading are paid once per shard.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Audio files.
    sr : int, default 22050
        Analysis sample rate in Hz.
    progress : bool, default True
        Show a tqdm progress bar.
    processors : AudioProcessors, optional
        Reuse already built models.
    **options
        Further keyword options of :func:`extract`.

    Returns
    -------
    features : dict
        ``features[key]`` for each vector feature: float64 array of shape
        ``(n_ok, dim)`` (``(0, FEATURE_DIMS[key])`` when nothing succeeded);
        ``features["chords"]``: list of n_ok int64 arrays; ``features["paths"]``:
        list of the n_ok successful paths (str), giving the row order (input
        order with failures removed).
    failures : list of (str, str)
        ``(path, reason)`` for every file that was skipped: missing,
        unreadable/corrupt/truncated, zero samples, non-finite, too short,
        silent, or any other exception raised while extracting it (reason
        prefixed with the exception type).
    """
    items = [os.fspath(p) for p in paths]
    rows: dict[str, list] = {k: [] for k in FEATURE_NAMES}
    ok_paths: list[str] = []
    failures: list[tuple[str, str]] = []
    if items and processors is None:
        processors = build_processors()  # outside the loop: a broken install is fatal, not per-file
    for p in track_progress(items, desc="audio features", unit="file", enabled=progress):
        try:
            feats = extract(p, sr=sr, processors=processors, **options)
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the shard
            failures.append((p, f"{type(exc).__name__}: {exc}"))
            continue
        for k in FEATURE_NAMES:
            rows[k].append(feats[k])
        ok_paths.append(p)

    out: dict[str, Any] = {}
    for k in VECTOR_FEATURES:
        out[k] = np.stack(rows[k]).astype(np.float64) if rows[k] else np.zeros((0, FEATURE_DIMS[k]), dtype=np.float64)
    out["chords"] = rows["chords"]
    out["paths"] = ok_paths
    return out, failures
