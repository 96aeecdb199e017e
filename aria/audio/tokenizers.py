"""Audio tokenizers for the three-stage (semantic → coarse → fine) audio model.

The paper's model (App. B.2, Table 6) is MusicLM/AudioLM-style: MERT k-means
*semantic* tokens, and EnCodec residual-vector-quantized *acoustic* codes whose
first 3 quantizers are the *coarse* stage and last 5 the *fine* stage. This
module gives offline stand-ins that really tokenize and reconstruct audio, plus
adapters for the real encoders when their weights are in a local cache.

================  ==========================  ==========  ======  =======
tokenizer         frames of                   frame rate  codes   quant.
================  ==========================  ==========  ======  =======
SemanticKMeans    standardized log-mel(64) +  10 Hz       128     1
                  chroma(12), k-means
MelRVQ            log-mel(64), residual VQ    25 Hz       256     8 (3+5)
MertSemantic      MERT-v1-95M layer, k-means  75 Hz       1024    1
EncodecAcoustic   EnCodec 24 kHz, 6 kbps      75 Hz       1024    8 (3+5)
================  ==========================  ==========  ======  =======

(stand-in values are the defaults at ``sr`` = 22050 Hz; all are keyword options.
The paper's Table 6 lists 50 Hz semantic tokens; MERT-v1-95M itself runs at
75 Hz, which is what the adapter reports.)

Conventions
-----------
*Audio* is a mono float array at the tokenizer's ``sr`` (callers resample).

*Frames.* With hop ``h`` samples, a signal of ``n`` samples has
``T = ceil(n / h)`` frames (:func:`n_frames`); frame ``t`` is the STFT frame
centred on sample ``t * h`` (zero padding at the edges) and stands for the hop
interval ``[t h, (t + 1) h)``. Frame rate = ``sr / h``.

*Stage windows* (docs/spec.md §1): non-overlapping windows of ``window_s`` seconds
(semantic 10 s, coarse 4 s, fine 2 s), see :func:`stage_windows`. A track
shorter than one window gives one zero-padded window; the final partial window
of a longer track is kept (padded) when it holds at least ``min_tail`` (default
one half) of a window and dropped otherwise. A window's frame mask marks frame
``t`` real when ``t h`` < the window's valid length (:meth:`StageWindows.frame_mask`).

Tokens per stage window at the defaults (22050 Hz):

==========  =======  ================  =======================
stage       window   frames            tokens
==========  =======  ================  =======================
semantic    10 s     100 (10 Hz)       100 (1 code / frame)
coarse       4 s     100 (25 Hz)       300 (quantizers 0-2)
fine         2 s      50 (25 Hz)       250 (quantizers 3-7)
==========  =======  ================  =======================

Randomness comes only from an explicit ``random_state`` (k-means++ seeding and
frame subsampling in ``fit``; Griffin-Lim phase init in ``decode``). Fitted
state is plain numpy arrays (:meth:`Tokenizer.state_dict`), so it can be saved
with ``np.savez`` and restored with :func:`tokenizer_from_state_dict`.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar, NamedTuple

import numpy as np

from aria.audio.signal import as_waveform, resample
from aria.models.hf import load_offline, mert_hidden_states

__all__ = [
    "n_frames",
    "log_mel",
    "frame_features",
    "StageWindows",
    "stage_windows",
    "window_audio",
    "nearest",
    "kmeans",
    "Tokenizer",
    "SemanticKMeans",
    "MelRVQ",
    "MertSemantic",
    "EncodecAcoustic",
    "tokenizer_from_state_dict",
]

_CHUNK = 8192  # rows per distance block in nearest-centre searches


# --------------------------------------------------------------------------
# frames and features
# --------------------------------------------------------------------------


def n_frames(n_samples: int, hop_length: int) -> int:
    """Number of frames of a signal: ``ceil(n_samples / hop_length)``."""
    if n_samples < 0 or hop_length <= 0:
        raise ValueError("n_samples must be >= 0 and hop_length > 0")
    return -(-int(n_samples) // int(hop_length))


def _power_spec(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT|², shape (1 + n_fft // 2, ceil(n / hop)), centred frames, zero padding."""
    import librosa

    spec = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, center=True, pad_mode="constant")[
        :, : n_frames(len(y), hop_length)
    ]
    return spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2


def _mel_basis(*, sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float64)


def log_mel(
    y, *, sr: int = 22050, n_fft: int = 2048, hop_length: int = 882, n_mels: int = 64, amin: float = 1e-4
) -> np.ndarray:
    """Natural-log mel power spectrogram.

    Parameters
    ----------
    y : float array, shape (n_samples,)
        Mono audio at ``sr`` Hz.
    sr, n_fft, hop_length, n_mels : int, keyword-only
        Sample rate (Hz), FFT size and hop (samples), number of mel bands
        (Slaney-normalized filters from 0 Hz to sr/2).
    amin : float, keyword-only
        Floor added before the log: ``L = log(mel_power + amin)``.

    Returns
    -------
    L : float64 array, shape (T, n_mels), ``T = ceil(n_samples / hop_length)``.
    """
    y = as_waveform(y)
    power = _power_spec(y, n_fft=n_fft, hop_length=hop_length)
    mel = _mel_basis(sr=sr, n_fft=n_fft, n_mels=n_mels) @ power
    return np.log(mel + amin).T


def frame_features(
    y, *, sr: int = 22050, hop_s: float = 0.1, n_mels: int = 64, n_fft: int | None = None, amin: float = 1e-6
) -> np.ndarray:
    """Frame-wise log-mel + chroma features (the semantic stand-in's input).

    Parameters
    ----------
    y : float array, shape (n_samples,)
        Mono audio at ``sr`` Hz.
    sr : int, keyword-only
        Sample rate in Hz.
    hop_s : float, keyword-only
        Hop in seconds; ``hop = round(hop_s * sr)`` samples. Frame rate
        ``sr / hop`` (10 Hz at the default).
    n_mels : int, keyword-only
        Mel bands.
    n_fft : int or None, keyword-only
        FFT size; default the smallest power of two >= 2 * hop (4096 at
        22050 Hz and 0.1 s).
    amin : float, keyword-only
        Floor inside the log-mel, ``log(mel_power + amin)``.

    Returns
    -------
    X : float64 array, shape (T, n_mels + 12), ``T = ceil(n_samples / hop)``.
        Columns ``[:n_mels]`` log-mel, ``[n_mels:]`` chroma (C..B, each frame
        max-normalized; all zeros on silence). Not standardized: the
        tokenizer learns the per-column mean and std in ``fit``.
    """
    import librosa

    y = as_waveform(y)
    hop = int(round(hop_s * sr))
    if hop <= 0:
        raise ValueError("hop_s * sr must be at least one sample")
    if n_fft is None:
        n_fft = 1 << max(1, math.ceil(math.log2(2 * hop)))
    power = _power_spec(y, n_fft=n_fft, hop_length=hop)
    mel = np.log(_mel_basis(sr=sr, n_fft=n_fft, n_mels=n_mels) @ power + amin)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, tuning=0.0)
    return np.concatenate([mel, chroma], axis=0).T.astype(np.float64)


def _mel_to_power(mel: np.ndarray, basis: np.ndarray, *, n_iter: int) -> np.ndarray:
    """Non-negative S with ``basis @ S ≈ mel`` by Richardson-Lucy updates.

    Parameters
    ----------
    mel : float array, shape (n_mels, T), mel power
    basis : float array, shape (n_mels, n_bins), mel filterbank

    Returns
    -------
    S : float64 array, shape (n_bins, T), linear power (bins no filter covers stay 0).
    """
    import scipy.sparse

    fb = scipy.sparse.csr_matrix(basis)
    fbt = scipy.sparse.csr_matrix(basis.T)
    den = np.asarray(fb.sum(axis=0)).ravel()[:, None]
    covered = den > 0
    den = np.where(covered, den, 1.0)
    power = (fbt @ mel) / den
    for _ in range(int(n_iter)):
        power *= (fbt @ (mel / np.maximum(fb @ power, 1e-30))) / den
        np.maximum(power, 1e-20, out=power)  # no denormals
    return np.where(covered, power, 0.0)


# --------------------------------------------------------------------------
# stage windows
# --------------------------------------------------------------------------


class StageWindows(NamedTuple):
    """Non-overlapping windows of one track for one stage.

    Attributes
    ----------
    starts : int64 array, shape (W,)
        First sample of each window.
    lengths : int64 array, shape (W,)
        Number of real (unpadded) samples in each window, 1..window.
    window : int
        Window length in samples (every window is padded to this length).
    """

    starts: np.ndarray
    lengths: np.ndarray
    window: int

    @property
    def padded(self) -> np.ndarray:
        """Bool array, shape (W,): the window contains zero padding."""
        return self.lengths < self.window

    def frame_mask(self, *, hop_length: int) -> np.ndarray:
        """Token/frame padding mask.

        Returns
        -------
        mask : bool array, shape (W, ceil(window / hop_length))
            ``mask[w, t]`` is True when frame ``t`` of window ``w`` is real
            audio, i.e. ``t * hop_length < lengths[w]``.
        """
        t = np.arange(n_frames(self.window, hop_length)) * int(hop_length)
        return t[None, :] < self.lengths[:, None]


def stage_windows(n_samples: int, *, sr: int, window_s: float, min_tail: float = 0.5) -> StageWindows:
    """Split a track into the non-overlapping windows of one stage.

    Parameters
    ----------
    n_samples : int
        Track length in samples.
    sr : int, keyword-only
        Sample rate in Hz.
    window_s : float, keyword-only
        Window length in seconds (semantic 10, coarse 4, fine 2);
        ``window = round(window_s * sr)`` samples.
    min_tail : float, keyword-only
        A longer track's final partial window is kept (zero-padded) when its
        real length is at least ``min_tail * window``, else dropped. 1.0
        drops every partial tail, 0.0 keeps every non-empty one. Has no
        effect on a track shorter than one window: it always yields exactly
        one padded window (docs/spec.md §1).

    Returns
    -------
    StageWindows
        Window ``w`` covers samples ``[starts[w], starts[w] + window)``;
        the first ``lengths[w]`` of them are real. An empty track gives no
        windows.

    Examples
    --------
    25 s at 10 s windows: starts 0, 10, 20 s; lengths 10, 10, 5 s (the 5 s tail
    is half a window, so it is kept). 3 s at 10 s: one window, length 3 s.
    """
    n_samples = int(n_samples)
    window = int(round(window_s * sr))
    if window <= 0:
        raise ValueError("window_s * sr must be at least one sample")
    if n_samples < 0:
        raise ValueError("n_samples must be >= 0")
    if not 0.0 <= min_tail <= 1.0:
        raise ValueError("min_tail must lie in [0, 1]")
    n_full, tail = divmod(n_samples, window)
    lengths = [window] * n_full
    if tail and (n_full == 0 or tail >= min_tail * window):
        lengths.append(tail)
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.arange(len(lengths), dtype=np.int64) * window
    return StageWindows(starts, lengths, window)


def window_audio(y, windows: StageWindows) -> np.ndarray:
    """Cut audio into its stage windows.

    Parameters
    ----------
    y : float array, shape (n_samples,)
        Mono audio.
    windows : StageWindows
        From :func:`stage_windows` for this track.

    Returns
    -------
    segments : float32 array, shape (W, windows.window); zero beyond each
        window's valid length.
    """
    y = np.asarray(y, dtype=np.float32)
    out = np.zeros((len(windows.starts), windows.window), dtype=np.float32)
    for w, (s, n) in enumerate(zip(windows.starts.tolist(), windows.lengths.tolist())):
        out[w, :n] = y[s : s + n]
    return out


# --------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------


def nearest(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and squared distance to the nearest centre, for each row of x.

    Parameters
    ----------
    x : float array, shape (n, d)
    centers : float array, shape (k, d)

    Returns
    -------
    labels : int64 array, shape (n,)
        Index into ``centers`` (the first one on ties).
    dist : float64 array, shape (n,)
        Squared Euclidean distance to that centre (clipped at 0).
    """
    c2 = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float64)
    for a in range(0, len(x), _CHUNK):
        xb = x[a : a + _CHUNK]
        d = c2[None, :] - 2.0 * (xb @ centers.T)
        lab = np.argmin(d, axis=1)
        labels[a : a + _CHUNK] = lab
        dist[a : a + _CHUNK] = np.maximum(d[np.arange(len(xb)), lab] + np.einsum("ij,ij->i", xb, xb), 0.0)
    return labels, dist


def kmeans(x, k: int, *, random_state, n_iter: int = 30, tol: float = 1e-4) -> np.ndarray:
    """k-means centres: scikit-learn's Lloyd iterations from greedy k-means++ seeding, one run.

    Parameters
    ----------
    x : float array, shape (n, d), n >= k
    k : int
        Number of centres.
    random_state : int, numpy Generator or SeedSequence, keyword-only
        Seeds scikit-learn's k-means++ draws (one integer is drawn from it).
    n_iter : int, keyword-only
        Maximum Lloyd iterations.
    tol : float, keyword-only
        scikit-learn's convergence tolerance (relative centre shift).

    Returns
    -------
    centers : float64 array, shape (k, d)

    Notes
    -----
    Runs on one thread so that the result does not depend on the machine's core
    count (same seed, same centres). ``bench/bench_library_swaps.py`` compares it
    with the hand-written Lloyd's k-means it replaced.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} frames to fit, got {x.shape[0]}")
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # fewer distinct points than k: duplicate centres, which nearest() handles
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        km = KMeans(
            n_clusters=k,
            init="k-means++",
            n_init=1,
            max_iter=int(n_iter),
            tol=tol,
            random_state=seed,
            algorithm="lloyd",
        ).fit(x)
    return np.asarray(km.cluster_centers_, dtype=np.float64)


def _subsample(x: np.ndarray, max_frames: int | None, rng) -> np.ndarray:
    if max_frames is None or len(x) <= max_frames:
        return x
    return x[np.sort(rng.choice(len(x), size=max_frames, replace=False))]


def _stack_frames(tracks: Iterable, fn) -> np.ndarray:
    frames = [fn(y) for y in tracks]
    if not frames:
        raise ValueError("fit needs at least one track")
    return np.concatenate(frames, axis=0)


# --------------------------------------------------------------------------
# tokenizer interface
# --------------------------------------------------------------------------


class Tokenizer(abc.ABC):
    """A seeded, fit-once audio tokenizer.

    Attributes
    ----------
    kind : str
        Name stored in the state dict (``state["kind"]``).
    sr : int
        Sample rate (Hz) of the audio ``encode`` takes and ``decode`` returns.
    hop_length : int
        Samples per token frame at ``sr``.
    n_codes : int
        Codebook size (token ids are ``0 .. n_codes - 1``).
    n_quantizers : int
        Codes per frame; 1 for semantic tokenizers.
    """

    kind: ClassVar[str]
    sr: int
    hop_length: int
    n_codes: int
    n_quantizers: int

    @property
    def frame_rate(self) -> float:
        """Token frames per second of audio (``sr / hop_length``)."""
        return self.sr / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Frames ``encode`` gives for ``n_samples`` samples of audio."""
        return n_frames(n_samples, self.hop_length)

    @property
    @abc.abstractmethod
    def fitted(self) -> bool:
        """Whether ``encode`` can be called."""

    @abc.abstractmethod
    def fit(self, tracks: Iterable[np.ndarray], *, random_state) -> Tokenizer:
        """Learn the codebooks from mono tracks at ``sr``; returns self.

        Parameters
        ----------
        tracks : iterable of float arrays, shape (n_samples,)
            Mono audio at ``sr`` Hz, one array per track (lengths may differ).
        random_state : int, numpy Generator or SeedSequence, keyword-only
            The only source of randomness (frame subsampling, k-means++ seeding):
            the same seed and tracks give the same codebooks.
        """

    @abc.abstractmethod
    def encode(self, y) -> np.ndarray:
        """Tokens of one mono signal: int64, (T,) or (T, n_quantizers)."""

    def decode(self, tokens, **kwargs) -> np.ndarray:
        """Audio (float32, shape (T * hop_length,)) from tokens, if supported."""
        raise NotImplementedError(f"{type(self).__name__} cannot decode tokens to audio")

    @abc.abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """Configuration and fitted state as plain numpy arrays (npz-safe)."""

    @classmethod
    @abc.abstractmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> Tokenizer:
        """Rebuild a tokenizer from :meth:`state_dict` (e.g. an ``np.load`` of it)."""

    def _require_fitted(self):
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")


def _scalar(state, key, typ):
    return typ(np.asarray(state[key]).item())


def _count_or_none(value) -> int | None:
    """A stored limit: -1 stands for None (no limit)."""
    value = int(value)
    return None if value < 0 else value


def _check_kind(cls, state):
    kind = str(np.asarray(state["kind"]).item())
    if kind != cls.kind:
        raise ValueError(f"state dict is for {kind!r}, not {cls.kind!r}")


class _StoredTokenizer(Tokenizer):
    """A tokenizer whose state dict is ``kind``, its :attr:`_SETTINGS` as 0-d arrays and its fitted
    :attr:`_ARRAYS` (float64), in that order.
    """

    #: settings stored in the state dict, in its order: name -> the type that reads it back
    _SETTINGS: ClassVar[dict[str, Callable]] = {}
    #: fitted float64 arrays stored after the settings
    _ARRAYS: ClassVar[tuple[str, ...]] = ()

    def state_dict(self) -> dict[str, np.ndarray]:
        """``kind`` and the settings as 0-d arrays (a ``max_frames`` of None as -1), then copies of the
        fitted arrays (float64); raises RuntimeError if not fitted.
        """
        self._require_fitted()
        state = {"kind": np.array(self.kind)}
        for key, typ in self._SETTINGS.items():
            value = getattr(self, key)
            state[key] = np.array(-1 if typ is _count_or_none and value is None else value)
        state.update({key: getattr(self, key).copy() for key in self._ARRAYS})
        return state

    @classmethod
    def from_state_dict(cls, state, **kwargs):
        """Rebuild from :meth:`state_dict`; raises ValueError if ``state["kind"]`` differs.

        ``kwargs`` go to the constructor (the adapters': ``cache_dir``, ``model``, ``processor``).
        """
        _check_kind(cls, state)
        tok = cls(**{key: _scalar(state, key, typ) for key, typ in cls._SETTINGS.items()}, **kwargs)
        for key in cls._ARRAYS:
            setattr(tok, key, np.array(state[key], dtype=np.float64))
        return tok


# --------------------------------------------------------------------------
# semantic stand-in
# --------------------------------------------------------------------------


class SemanticKMeans(_StoredTokenizer):
    """Semantic stand-in: k-means tokens of standardized log-mel + chroma frames.

    Parameters (keyword-only)
    ----------
    sr : int
        Sample rate in Hz (default 22050).
    hop_s : float
        Frame hop in seconds (default 0.1 → 10 Hz).
    n_codes : int
        Codebook size (default 128; the paper's MERT k-means uses 1024).
    n_mels : int
        Mel bands of :func:`frame_features` (default 64).
    max_frames : int or None
        ``fit`` draws at most this many frames (seeded) from the corpus.
    n_iter : int
        Lloyd iterations.

    ``encode(y)`` → int64 (T,) with ``T = ceil(len(y) / hop)``. No decoder.
    """

    kind = "semantic_kmeans"
    n_quantizers = 1
    _SETTINGS = {"sr": int, "hop_s": float, "n_codes": int, "n_mels": int, "n_iter": int, "max_frames": _count_or_none}
    #: the fitted ``mean`` and ``std`` (n_mels + 12,) and ``codebook`` (n_codes, n_mels + 12)
    _ARRAYS = ("mean", "std", "codebook")

    def __init__(
        self,
        *,
        sr: int = 22050,
        hop_s: float = 0.1,
        n_codes: int = 128,
        n_mels: int = 64,
        max_frames: int | None = 200_000,
        n_iter: int = 30,
    ):
        self.sr = int(sr)
        self.hop_s = float(hop_s)
        self.hop_length = int(round(self.hop_s * self.sr))
        self.n_codes = int(n_codes)
        self.n_mels = int(n_mels)
        self.max_frames = max_frames
        self.n_iter = int(n_iter)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.codebook: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` has run (or the state was loaded), so that ``encode`` can be called."""
        return self.codebook is not None

    def features(self, y) -> np.ndarray:
        """Standardization input: :func:`frame_features`, shape (T, n_mels + 12)."""
        return frame_features(y, sr=self.sr, hop_s=self.hop_s, n_mels=self.n_mels)

    def fit(self, tracks, *, random_state) -> SemanticKMeans:
        """Learn per-column mean/std and the k-means codebook (seeded); returns self.

        ``tracks`` and ``random_state`` as in :meth:`Tokenizer.fit`: ``random_state`` seeds the draw of at
        most ``max_frames`` frames and the k-means++ seeding. Sets ``mean``, ``std`` (n_mels + 12,) and
        ``codebook`` (n_codes, n_mels + 12).
        """
        rng = np.random.default_rng(random_state)
        x = _subsample(_stack_frames(tracks, self.features), self.max_frames, rng)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 1e-8, std, 1.0)
        self.codebook = kmeans((x - self.mean) / self.std, self.n_codes, random_state=rng, n_iter=self.n_iter)
        return self

    def encode(self, y) -> np.ndarray:
        """Token of each 1/frame_rate s frame: int64 array, shape (T,)."""
        return self.encode_and_embed(y)[0]

    def encode_and_embed(self, y) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` and the track embedding from one feature pass.

        Returns
        -------
        tokens : int64 array (T,)
        embedding : float array (n_mels + 12,), the standardized frame features averaged over
            time (what :class:`aria.audio.stages.ConditioningRVQ` quantizes).
        """
        self._require_fitted()
        z = (self.features(y) - self.mean) / self.std
        return nearest(z, self.codebook)[0], z.mean(0)


# --------------------------------------------------------------------------
# acoustic stand-in
# --------------------------------------------------------------------------


class MelRVQ(_StoredTokenizer):
    """Acoustic stand-in: residual vector quantization of log-mel frames.

    Stage ``q`` has a codebook of ``n_codes`` vectors learned by k-means on the
    residual left by stages ``0 .. q-1`` (the log-mel minus its corpus mean at
    stage 0). Quantizers ``0 .. n_coarse-1`` are the *coarse* tokens, the rest
    the *fine* tokens.

    Parameters (keyword-only)
    ----------
    sr : int
        Sample rate in Hz (default 22050).
    hop_length : int
        Hop in samples (default 882 → 25 Hz at 22050 Hz).
    n_fft : int
        FFT size (default 2048).
    n_mels : int
        Mel bands (default 64).
    n_quantizers : int
        RVQ depth (default 8).
    n_coarse : int
        Leading quantizers that form the coarse stage (default 3).
    n_codes : int
        Codebook size per quantizer (default 256).
    amin : float
        Log floor, ``L = log(mel_power + amin)``.
    max_frames : int or None
        ``fit`` draws at most this many frames (seeded) from the corpus.
    n_iter : int
        Lloyd iterations per quantizer.
    """

    kind = "mel_rvq"
    _SETTINGS = {
        "sr": int,
        "hop_length": int,
        "n_fft": int,
        "n_mels": int,
        "n_quantizers": int,
        "n_coarse": int,
        "n_codes": int,
        "amin": float,
        "n_iter": int,
        "max_frames": _count_or_none,
    }
    #: the fitted ``mean`` (n_mels,) and ``codebooks`` (n_quantizers, n_codes, n_mels)
    _ARRAYS = ("mean", "codebooks")

    def __init__(
        self,
        *,
        sr: int = 22050,
        hop_length: int = 882,
        n_fft: int = 2048,
        n_mels: int = 64,
        n_quantizers: int = 8,
        n_coarse: int = 3,
        n_codes: int = 256,
        amin: float = 1e-4,
        max_frames: int | None = 200_000,
        n_iter: int = 30,
    ):
        if not 0 < n_coarse <= n_quantizers:
            raise ValueError("need 0 < n_coarse <= n_quantizers")
        self.sr = int(sr)
        self.hop_length = int(hop_length)
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self.n_quantizers = int(n_quantizers)
        self.n_coarse = int(n_coarse)
        self.n_codes = int(n_codes)
        self.amin = float(amin)
        self.max_frames = max_frames
        self.n_iter = int(n_iter)
        self.mean: np.ndarray | None = None
        self.codebooks: np.ndarray | None = None  # (n_quantizers, n_codes, n_mels)
        self._basis: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` has run (or the state was loaded), so that ``encode`` can be called."""
        return self.codebooks is not None

    @property
    def n_fine(self) -> int:
        """Quantizers of the fine stage."""
        return self.n_quantizers - self.n_coarse

    @property
    def mel_basis(self) -> np.ndarray:
        """Mel filterbank, shape (n_mels, 1 + n_fft // 2) (built once per instance)."""
        if self._basis is None:
            self._basis = _mel_basis(sr=self.sr, n_fft=self.n_fft, n_mels=self.n_mels)
        return self._basis

    def log_mel(self, y) -> np.ndarray:
        """:func:`log_mel` with this tokenizer's settings: (T, n_mels)."""
        y = as_waveform(y)
        power = _power_spec(y, n_fft=self.n_fft, hop_length=self.hop_length)
        return np.log(self.mel_basis @ power + self.amin).T

    def fit(self, tracks, *, random_state) -> MelRVQ:
        """Learn the corpus mean and the ``n_quantizers`` codebooks (seeded); returns self.

        ``tracks`` and ``random_state`` as in :meth:`Tokenizer.fit`: ``random_state`` seeds the draw of at
        most ``max_frames`` frames and each quantizer's k-means++ seeding. Sets ``mean`` (n_mels,) and
        ``codebooks`` (n_quantizers, n_codes, n_mels).
        """
        rng = np.random.default_rng(random_state)
        x = _subsample(_stack_frames(tracks, self.log_mel), self.max_frames, rng)
        self.mean = x.mean(axis=0)
        residual = x - self.mean
        books = []
        for _ in range(self.n_quantizers):
            book = kmeans(residual, self.n_codes, random_state=rng, n_iter=self.n_iter)
            residual -= book[nearest(residual, book)[0]]
            books.append(book)
        self.codebooks = np.stack(books)
        return self

    def quantize(self, logmel) -> np.ndarray:
        """Greedy RVQ codes of log-mel frames (T, n_mels) → int64 (T, n_quantizers)."""
        self._require_fitted()
        residual = np.asarray(logmel, dtype=np.float64) - self.mean
        codes = np.empty((len(residual), self.n_quantizers), dtype=np.int64)
        for q, book in enumerate(self.codebooks):
            codes[:, q] = nearest(residual, book)[0]
            residual = residual - book[codes[:, q]]
        return codes

    def encode(self, y) -> np.ndarray:
        """Codes of one signal: int64 array, shape (T, n_quantizers), T = ceil(n / hop).

        ``codes[:, :n_coarse]`` are the coarse tokens, ``codes[:, n_coarse:]``
        the fine tokens.
        """
        return self.quantize(self.log_mel(y))

    def split(self, codes) -> tuple[np.ndarray, np.ndarray]:
        """(coarse, fine) = ``codes[:, :n_coarse], codes[:, n_coarse:]``."""
        codes = np.asarray(codes)
        return codes[:, : self.n_coarse], codes[:, self.n_coarse :]

    def decode_mel(self, codes, *, n_quantizers: int | None = None) -> np.ndarray:
        """Log-mel (T, n_mels) from codes, summing the first ``n_quantizers`` stages.

        Parameters
        ----------
        codes : int array, shape (T, q) with q >= n_quantizers
            Extra columns beyond ``n_quantizers`` are ignored; default uses all
            of them (so coarse-only codes, shape (T, n_coarse), also decode).
        """
        self._require_fitted()
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] > self.n_quantizers:
            raise ValueError(f"codes must have shape (T, <= {self.n_quantizers}); got {codes.shape}")
        nq = codes.shape[1] if n_quantizers is None else int(n_quantizers)
        if not 0 <= nq <= codes.shape[1]:
            raise ValueError(f"n_quantizers must lie in 0..{codes.shape[1]}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.n_codes):
            raise ValueError(f"codes must lie in 0..{self.n_codes - 1}")
        out = np.broadcast_to(self.mean, (len(codes), self.n_mels)).copy()
        for q in range(nq):
            out += self.codebooks[q][codes[:, q]]
        return out

    def decode(
        self, codes, *, n_quantizers: int | None = None, n_iter: int = 32, n_inv_iter: int = 100, random_state=0
    ) -> np.ndarray:
        """Audio from codes: RVQ sum → mel power → linear power → Griffin-Lim.

        The linear power spectrum is the non-negative solution of
        ``mel_basis @ S = mel`` found by ``n_inv_iter`` Richardson-Lucy
        (KL-NMF) multiplicative updates from the filter-transpose start; unlike
        least squares it fits quiet bands in relative terms, which is what a
        log-mel comparison sees.

        Parameters
        ----------
        codes : int array, shape (T, q)
        n_quantizers : int or None, keyword-only
            As in :meth:`decode_mel`.
        n_iter : int, keyword-only
            Griffin-Lim iterations.
        n_inv_iter : int, keyword-only
            Multiplicative updates of the mel → linear inversion.
        random_state : int, keyword-only
            Seeds the random initial phase (same seed → same audio).

        Returns
        -------
        y : float32 array, shape (T * hop_length,), at ``sr`` Hz.
        """
        import librosa

        logmel = self.decode_mel(codes, n_quantizers=n_quantizers)
        if len(logmel) == 0:
            return np.zeros(0, dtype=np.float32)
        mel = np.maximum(np.exp(logmel.T) - self.amin, 0.0)
        power = _mel_to_power(mel, self.mel_basis, n_iter=n_inv_iter)
        mag = np.sqrt(power)
        # a centred STFT of T * hop samples has T + 1 frames: repeat the last one
        mag = np.concatenate([mag, mag[:, -1:]], axis=1)
        y = librosa.griffinlim(
            mag.astype(np.float32),
            n_iter=int(n_iter),
            hop_length=self.hop_length,
            n_fft=self.n_fft,
            center=True,
            length=len(logmel) * self.hop_length,
            random_state=np.random.RandomState(random_state),
        )
        return y.astype(np.float32)


# --------------------------------------------------------------------------
# adapters for the paper's pretrained encoders (local cache only)
# --------------------------------------------------------------------------


class MertSemantic(_StoredTokenizer):
    """The paper's semantic tokens: k-means over one MERT hidden layer.

    Loads ``model_id`` (default ``m-a-p/MERT-v1-95M``, 24 kHz input, 75 Hz
    frames) from the local Hugging Face cache only, with ``trust_remote_code``
    (MERT's modelling code lives in the cached repository and needs
    ``nnAudio``). Raises RuntimeError naming the model when ``transformers`` or
    the weights are missing.

    Parameters (keyword-only)
    ----------
    sr : int
        Rate of the audio passed to encode/fit (resampled to 24 kHz inside).
    layer : int
        Hidden state index (0 = CNN features, 1..12 transformer layers).
    n_codes : int
        k-means codebook size (paper: 1024).
    cache_dir : str or None
        Hugging Face cache directory (default: the hub's own default).
    model, processor : optional
        An already loaded MERT model and ``Wav2Vec2FeatureExtractor``; when
        both are given nothing is looked up (tests, or callers that load
        the model themselves). The model must accept
        ``model(**processor(...), output_hidden_states=True)``.
    """

    kind = "mert_semantic"
    n_quantizers = 1
    model_rate = 24000
    model_hop = 320  # 75 Hz at 24 kHz
    _SETTINGS = {"model_id": str, "sr": int, "layer": int, "n_codes": int}
    #: the ``codebook`` (n_codes, 768); the state dict holds no MERT weights
    _ARRAYS = ("codebook",)

    def __init__(
        self,
        *,
        model_id: str = "m-a-p/MERT-v1-95M",
        sr: int = 22050,
        layer: int = 7,
        n_codes: int = 1024,
        cache_dir: str | None = None,
        max_frames: int | None = 200_000,
        n_iter: int = 30,
        model=None,
        processor=None,
    ):
        self.model_id = model_id
        self.sr = int(sr)
        self.layer = int(layer)
        self.n_codes = int(n_codes)
        self.cache_dir = cache_dir
        self.max_frames = max_frames
        self.n_iter = int(n_iter)
        self.hop_length = int(round(self.sr / 75))  # frames are reported at 75 Hz
        self.codebook: np.ndarray | None = None

        def load(tf, source, kw):
            model = tf.AutoModel.from_pretrained(source, trust_remote_code=True, **kw)
            proc = tf.Wav2Vec2FeatureExtractor.from_pretrained(source, trust_remote_code=True, **kw)
            return model.eval(), proc

        if model is not None and processor is not None:
            self._model, self._processor = model, processor
        else:
            self._model, self._processor = load_offline(model_id, load, cache_dir=cache_dir, extra=" nnAudio")

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` has run (or the state was loaded), so that ``encode`` can be called."""
        return self.codebook is not None

    def features(self, y) -> np.ndarray:
        """Hidden state ``layer`` of MERT, float64 (T, 768), T = ceil(n / hop_length)."""
        y = as_waveform(y)
        y24 = resample(y, self.sr, self.model_rate)
        h = mert_hidden_states(self._model, self._processor, y24, sr=self.model_rate, layer=self.layer).astype(
            np.float64
        )
        t = self.n_frames(len(y))
        if len(h) < t:  # pad by repeating the last frame
            h = np.concatenate([h, np.repeat(h[-1:], t - len(h), axis=0)])
        return h[:t]

    def fit(self, tracks, *, random_state) -> MertSemantic:
        """Learn the k-means codebook (n_codes, 768) over MERT frames of ``tracks``; returns self.

        ``tracks`` and ``random_state`` as in :meth:`Tokenizer.fit`: ``random_state`` seeds the subsampling
        to ``max_frames`` frames and the k-means++ seeding.
        """
        rng = np.random.default_rng(random_state)
        x = _subsample(_stack_frames(tracks, self.features), self.max_frames, rng)
        self.codebook = kmeans(x, self.n_codes, random_state=rng, n_iter=self.n_iter)
        return self

    def encode(self, y) -> np.ndarray:
        """Nearest-centre token of each 75 Hz frame: int64 array, shape (T,), T = ceil(n / hop_length)."""
        self._require_fitted()
        return nearest(self.features(y), self.codebook)[0]


class EncodecAcoustic(_StoredTokenizer):
    """The paper's acoustic tokens: EnCodec RVQ codes (coarse = first 3, fine = next 5).

    Loads ``model_id`` (default ``facebook/encodec_24khz``) from the local
    Hugging Face cache only; at ``bandwidth`` 6 kbps it gives 8 quantizers of
    1024 codes at 75 Hz. Nothing to fit (``fit`` is a no-op). Audio at ``sr`` is
    resampled to 24 kHz for encoding and back for decoding. ``model=`` takes an
    already loaded ``transformers.EncodecModel`` (24 kHz, unchunked) instead of
    looking one up.
    """

    kind = "encodec_acoustic"
    model_rate = 24000
    n_codes = 1024
    #: ``bandwidth`` in kbps; no fitted arrays (the state dict holds no EnCodec weights)
    _SETTINGS = {"model_id": str, "sr": int, "bandwidth": float, "n_coarse": int}

    def __init__(
        self,
        *,
        model_id: str = "facebook/encodec_24khz",
        sr: int = 22050,
        bandwidth: float = 6.0,
        n_coarse: int = 3,
        cache_dir: str | None = None,
        model=None,
    ):
        self.model_id = model_id
        self.sr = int(sr)
        self.bandwidth = float(bandwidth)
        self.n_quantizers = int(round(self.bandwidth * 1000 / (75 * 10)))  # 10 bits/code
        self.n_coarse = int(n_coarse)
        self.cache_dir = cache_dir
        self.hop_length = int(round(self.sr / 75))

        def load(tf, source, kw):
            return tf.EncodecModel.from_pretrained(source, **kw).eval()

        self._model = model if model is not None else load_offline(model_id, load, cache_dir=cache_dir)

    @property
    def fitted(self) -> bool:
        """Always True: EnCodec's codebooks are pretrained."""
        return True

    def fit(self, tracks, *, random_state) -> EncodecAcoustic:
        """No-op (nothing to learn); ``tracks`` and ``random_state`` are ignored. Returns self."""
        return self

    def encode(self, y) -> np.ndarray:
        """Codes, int64 (T, n_quantizers), T = ceil(n / hop_length) (75 Hz)."""
        import torch

        y = as_waveform(y)
        y24 = torch.from_numpy(resample(y, self.sr, self.model_rate))[None, None, :]
        with torch.no_grad():
            enc = self._model.encode(y24, bandwidth=self.bandwidth)
        codes = enc.audio_codes[0, 0].T.numpy().astype(np.int64)  # (T, n_q)
        t = self.n_frames(len(y))
        if len(codes) < t:
            codes = np.concatenate([codes, np.repeat(codes[-1:], t - len(codes), axis=0)])
        return codes[:t]

    @property
    def n_fine(self) -> int:
        """Quantizers of the fine stage."""
        return self.n_quantizers - self.n_coarse

    def split(self, codes) -> tuple[np.ndarray, np.ndarray]:
        """(coarse, fine) = ``codes[:, :n_coarse], codes[:, n_coarse:]``."""
        codes = np.asarray(codes)
        return codes[:, : self.n_coarse], codes[:, self.n_coarse :]

    def decode(self, codes, **kwargs) -> np.ndarray:
        """Audio from codes (T, q), q <= n_quantizers: float32 (T * hop_length,) at ``sr``."""
        import torch

        codes = torch.as_tensor(np.asarray(codes, dtype=np.int64).T[None, None])
        with torch.no_grad():
            audio = self._model.decode(codes, [None])[0][0, 0].numpy()
        y = resample(audio.astype(np.float32), self.model_rate, self.sr)
        n = codes.shape[-1] * self.hop_length
        return np.pad(y, (0, max(0, n - len(y))))[:n]


_KINDS = {c.kind: c for c in (SemanticKMeans, MelRVQ, MertSemantic, EncodecAcoustic)}


def tokenizer_from_state_dict(state: Mapping[str, np.ndarray], **kwargs) -> Tokenizer:
    """Rebuild any tokenizer of this module from its ``state_dict`` (dispatch on ``kind``).

    ``kwargs`` go to the adapters' ``from_state_dict`` (e.g. ``cache_dir``).
    """
    kind = str(np.asarray(state["kind"]).item())
    if kind not in _KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {sorted(_KINDS)}")
    return _KINDS[kind].from_state_dict(state, **kwargs)
