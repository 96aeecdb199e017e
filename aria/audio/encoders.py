"""Audio embedding encoders for the embedding baselines (docs/spec.md §2 "Embedding baselines").

The scores built from their embeddings (time-averaged cosine, all-against-all) are
in :mod:`aria.attribution.embedding`; the registry of encoders is
:data:`aria.registry.ENCODERS`.

Encoders (all take a numpy waveform and its sample rate; no file I/O here):

- :class:`BasicPitchEncoder` -- basic-pitch note + onset posteriorgrams (88 piano
  keys, MIDI 21..108, 86 frames/s, 176-d). Pitch-, harmony- and onset-sensitive,
  nearly timbre- and loudness-blind: a symbolic/musical-content view (stands in for
  CLEWS-like similarity). Weights: ONNX file inside the ``basic_pitch`` package.
- :class:`AisfxEncoder` -- aiSFX sound-effects CNN on log-mel (512-d, ~1 frame/s).
  Timbre-, texture- and instrumentation-sensitive, weak on pitch, loudness-invariant
  (stands in for CLAP-like general-audio similarity). Weights inside ``aisfx``.
- :class:`HFEncoder` -- the paper's CLAP (``laion/clap-htsat-unfused``,
  ``laion/larger_clap_music``) and MERT (``m-a-p/MERT-v1-95M``) via ``transformers``,
  from the local Hugging Face cache only.

No encoder downloads anything: models load from files inside installed packages or
from the local Hugging Face cache (``local_files_only=True``); otherwise a
``RuntimeError`` names the missing package or weights.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aria.audio.signal import as_waveform, resample
from aria.models.hf import load_offline, mert_hidden_states

__all__ = [
    "Encoder",
    "BasicPitchEncoder",
    "AisfxEncoder",
    "HFEncoder",
    "clap_encoder",
    "mert_encoder",
    "get_encoder",
]


# encoders
# ---------------------------------------------------------------------------


def _mono(y, sr) -> np.ndarray:
    """Waveform as float32 mono, shape (n,); accepts (n,) or channels-first (c, n)."""
    if not sr > 0:
        raise ValueError(f"sample rate must be > 0, got {sr}")
    return as_waveform(y, mix_channels=True)


def _package_dir(name: str) -> Path:
    """Install directory of a package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"Python package `{name}` is not installed")
    return Path(list(spec.submodule_search_locations)[0])


class Encoder:
    """Audio encoder interface for the embedding baselines.

    Attributes
    ----------
    name : str
        Short identifier (used in file names and reports).
    stands_in_for : str
        Which encoder of the paper this one replaces and what it is sensitive to.
    sample_rate : float
        Native input rate (Hz); inputs at other rates are resampled.
    frame_rate : float
        Frames per second (Hz) of :meth:`frames` (frame ``i`` starts at
        ``i / frame_rate`` s).
    dim : int
        Embedding dimension ``d``.
    """

    name: str = "encoder"
    stands_in_for: str = ""
    sample_rate: float
    frame_rate: float
    dim: int

    def frames(self, y: np.ndarray, sr: float) -> np.ndarray:
        """Frame-level embeddings.

        Parameters
        ----------
        y : ndarray, shape (n,) or (channels, n)
            Waveform, float, nominally in [-1, 1]; channels are averaged.
        sr : float
            Sample rate of ``y`` (Hz).

        Returns
        -------
        ndarray, shape (n_frames, dim), float32
        """
        raise NotImplementedError

    def embed(self, y: np.ndarray, sr: float) -> np.ndarray:
        """Track embedding: :meth:`frames` averaged over time, shape (dim,), float32."""
        return self.frames(y, sr).mean(axis=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class BasicPitchEncoder(Encoder):
    """Basic Pitch (Spotify, ICASSP 2022) note + onset posteriorgrams.

    Runs the ONNX export shipped inside the ``basic_pitch`` package with
    onnxruntime (no TensorFlow), windowed exactly like
    ``basic_pitch.inference.run_inference``: audio at 22 050 Hz, 2 s windows
    (43 844 samples) overlapping by 30 frames, half the overlap trimmed from each
    side, output trimmed to ``floor(n_samples * 86 / 22050)`` frames.

    Frame ``i`` holds, for the 88 piano keys (bin ``k`` = MIDI ``21 + k``), the note
    activation probabilities followed by the onset probabilities (``outputs``
    order); the optional ``"contour"`` output has 264 bins (3 per semitone).
    Musical sensitivity: pitch, harmony (pitch-class content) and note onsets;
    largely invariant to timbre and loudness. Stands in for a symbolic/transcription
    view of the audio (CLEWS-like musical-content similarity).

    Parameters
    ----------
    outputs : tuple of str
        Which model outputs to concatenate, from ``"note"`` (88), ``"onset"`` (88),
        ``"contour"`` (264).
    batch_size : int
        Windows per onnxruntime call.
    n_threads : int or None
        onnxruntime intra-op threads (None: its default).
    model_path : path or None
        ONNX file; default ``basic_pitch/saved_models/icassp_2022/nmp.onnx``.
    """

    name = "basic_pitch"
    stands_in_for = (
        "symbolic-content encoder (note/onset posteriorgrams): pitch-, harmony- and "
        "onset-sensitive, timbre-blind; the paper's CLEWS-like musical similarity"
    )
    sample_rate = 22050.0
    #: nominal frames per second used by basic-pitch itself (22050 // 256)
    frame_rate = 86.0
    #: MIDI number of note/onset bin 0 (bin k is MIDI 21 + k)
    midi_offset = 21
    n_notes = 88

    _FFT_HOP = 256
    _N_SAMPLES = 2 * 22050 - 256  # AUDIO_N_SAMPLES
    _N_OVERLAP_FRAMES = 30
    _OUT_NAMES = {
        "note": "StatefulPartitionedCall:1",
        "onset": "StatefulPartitionedCall:2",
        "contour": "StatefulPartitionedCall:0",
    }
    _DIMS = {"note": 88, "onset": 88, "contour": 264}

    def __init__(
        self,
        *,
        outputs: Sequence[str] = ("note", "onset"),
        batch_size: int = 16,
        n_threads: int | None = None,
        model_path: str | os.PathLike | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise RuntimeError("BasicPitchEncoder needs the Python package `onnxruntime` (not installed)") from e
        bad = [o for o in outputs if o not in self._OUT_NAMES]
        if bad or not outputs:
            raise ValueError(f"outputs must be a non-empty subset of {list(self._OUT_NAMES)}, got {outputs}")
        self.outputs = tuple(outputs)
        self.dim = sum(self._DIMS[o] for o in self.outputs)
        self.batch_size = int(batch_size)
        if model_path is None:
            model_path = _package_dir("basic_pitch") / "saved_models" / "icassp_2022" / "nmp.onnx"
        model_path = Path(model_path)
        if not model_path.is_file():
            raise RuntimeError(f"basic-pitch ONNX model not found at {model_path}")
        opts = ort.SessionOptions()
        if n_threads is not None:
            opts.intra_op_num_threads = int(n_threads)
            opts.inter_op_num_threads = 1
        self.model_path = model_path
        self._sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name

    def posteriorgrams(self, y: np.ndarray, sr: float) -> dict[str, np.ndarray]:
        """Raw model outputs for one waveform.

        Returns
        -------
        dict
            ``"note"``, ``"onset"``: (n_frames, 88); ``"contour"``: (n_frames, 264);
            probabilities in [0, 1] at :attr:`frame_rate` frames/s.
        """
        y = resample(_mono(y, sr), sr, self.sample_rate)
        n_orig = y.shape[0]
        n_frames = int(np.floor(n_orig * self.frame_rate / self.sample_rate))
        if n_frames < 1:
            raise ValueError(f"waveform too short for basic-pitch: {n_orig / self.sample_rate:.4f} s")
        overlap_len = self._N_OVERLAP_FRAMES * self._FFT_HOP
        hop = self._N_SAMPLES - overlap_len
        y = np.concatenate([np.zeros(overlap_len // 2, dtype=np.float32), y])
        starts = np.arange(0, y.shape[0], hop)
        need = starts[-1] + self._N_SAMPLES
        y = np.pad(y, (0, max(0, need - y.shape[0])))
        idx = starts[:, None] + np.arange(self._N_SAMPLES)[None, :]
        windows = y[idx][..., None]  # (n_windows, 43844, 1)
        names = [self._OUT_NAMES[k] for k in ("note", "onset", "contour")]
        acc: dict[str, list] = {"note": [], "onset": [], "contour": []}
        for b in range(0, windows.shape[0], self.batch_size):
            res = self._sess.run(names, {self._input: windows[b : b + self.batch_size]})
            for k, v in zip(("note", "onset", "contour"), res):
                acc[k].append(v)
        n_olap = self._N_OVERLAP_FRAMES // 2
        out = {}
        for k, parts in acc.items():
            v = np.concatenate(parts, axis=0)[:, n_olap:-n_olap, :]
            out[k] = v.reshape(-1, v.shape[-1])[:n_frames].astype(np.float32)
        return out

    def frames(self, y: np.ndarray, sr: float) -> np.ndarray:
        """Concatenated posteriorgrams, shape (n_frames, dim) at 86 frames/s.

        With the default ``outputs`` columns 0..87 are note probabilities and
        88..175 onset probabilities, column ``k`` (mod 88) = MIDI ``21 + k``.
        """
        pg = self.posteriorgrams(y, sr)
        return np.concatenate([pg[k] for k in self.outputs], axis=1)


class AisfxEncoder(Encoder):
    """aiSFX (Ma et al., ISMIR 2022) cross-dataset sound-effects CNN embeddings.

    Follows ``aisfx.inference`` with its librosa spectrogram: audio at 44.1 kHz,
    peak-normalized; 96-band HTK mel power spectrogram (2048-sample window,
    1024 hop, area-normalized bands), ``log10(1e4 * x + 1)`` then divided by the
    package's "original" maximum 9.4578; blocks of 100 spectrogram frames
    (~2.32 s), one 512-d embedding per block (zero padding when shorter,
    incomplete last block dropped). Weights ship in the ``aisfx`` package
    (``models/checkpoint.pth``).

    Musical sensitivity: timbre, texture, instrumentation and broad spectral shape;
    weakly pitch sensitive (max-pooled CNN) and loudness-invariant (peak
    normalization per track). Stands in for a general-audio encoder (CLAP-like
    timbre/style similarity).

    Parameters
    ----------
    hop_frames : int
        Block hop in spectrogram frames (1 frame = 1024 / 44100 s). Default 43
        (~1.0 s) so that 1 s-hop windows are well sampled; the ISMIR paper used 50.
    batch_size : int
        Blocks per forward pass.
    n_threads : int or None
        ``torch.set_num_threads`` value applied while encoding (None: unchanged).
    """

    name = "aisfx"
    stands_in_for = (
        "general-audio encoder (sound-effects CNN on log-mel): timbre-, texture- and "
        "instrumentation-sensitive, weak on pitch; the paper's CLAP-like similarity"
    )
    sample_rate = 44100.0
    dim = 512
    _SPEC_HOP = 1024
    _SPEC_WIN = 2048
    _N_MELS = 96
    _BLOCK = 100
    _NORM_MAX = 9.457798957824707

    def __init__(self, *, hop_frames: int = 43, batch_size: int = 64, n_threads: int | None = None) -> None:
        try:
            import torch
            from aisfx.inference import load_bestModel
            from aisfx.preprocessing import blocking
        except ImportError as e:
            raise RuntimeError(f"AisfxEncoder needs the Python packages `aisfx` (0.1.2) and `torch`: {e}") from e
        if not 1 <= int(hop_frames) <= self._BLOCK:
            raise ValueError(f"hop_frames must be in 1..{self._BLOCK}, got {hop_frames}")
        self.hop_frames = int(hop_frames)
        self.batch_size = int(batch_size)
        self.n_threads = n_threads
        self.frame_rate = self.sample_rate / self._SPEC_HOP / self.hop_frames
        ckpt = _package_dir("aisfx") / "models" / "checkpoint.pth"
        if not ckpt.is_file():
            raise RuntimeError(f"aisfx weights not found at {ckpt}")
        weights, ds_dict = torch.load(ckpt, map_location="cpu", weights_only=False)
        self._model = load_bestModel(weights, ds_dict, "cpu")
        self._blocking = blocking
        self._torch = torch

    def log_mel(self, y: np.ndarray, sr: float) -> np.ndarray:
        """Normalized log-mel input of the CNN, shape (n_spec_frames, 96)."""
        import librosa

        y = resample(_mono(y, sr), sr, self.sample_rate)
        peak = float(np.max(np.abs(y)))
        y = y / (peak if peak > 0 else 1.0)
        spec = librosa.feature.melspectrogram(
            y=y,
            sr=self.sample_rate,
            n_fft=self._SPEC_WIN,
            n_mels=self._N_MELS,
            norm=1.0,
            fmin=0.0,
            fmax=self.sample_rate / 2,
            htk=True,
            power=2.0,
            hop_length=self._SPEC_HOP,
            win_length=self._SPEC_WIN,
        )
        spec = np.log10(spec * 10000.0 + 1.0)
        return (spec.T / self._NORM_MAX).astype(np.float32)

    def frames(self, y: np.ndarray, sr: float) -> np.ndarray:
        """One 512-d embedding per block, shape (n_blocks, 512) at :attr:`frame_rate`.

        Block ``i`` covers spectrogram frames ``[i * hop_frames, i * hop_frames +
        100)``; a track shorter than one block gives one zero-padded block.
        """
        torch = self._torch
        spec = self.log_mel(y, sr)
        blocks = self._blocking(spec, block_size=self._BLOCK, hop_size=self.hop_frames, drop_partial_block=True)
        out = []
        prev = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            with torch.no_grad():
                for b in range(0, blocks.shape[0], self.batch_size):
                    x = torch.from_numpy(np.ascontiguousarray(blocks[b : b + self.batch_size], dtype=np.float32))
                    out.append(self._model.get_embedding(x).numpy())
        finally:
            if self.n_threads is not None:
                torch.set_num_threads(prev)
        return np.concatenate(out, axis=0).astype(np.float32)


class HFEncoder(Encoder):
    """CLAP or MERT through ``transformers``, from local files only.

    Nothing is downloaded: ``HF_HUB_OFFLINE=1`` is set (if unset) and every
    ``from_pretrained`` call uses ``local_files_only=True``. Without the
    ``transformers`` package, or without the weights in the local Hugging Face cache
    (or ``model_path``), the constructor raises ``RuntimeError`` naming what is
    missing.

    - ``kind="clap"`` (default model ``laion/clap-htsat-unfused``; the music variant
      is ``laion/larger_clap_music``): audio resampled to 48 kHz, cut into
      ``clip_s`` windows every ``hop_s`` seconds (a shorter track: one window), each
      window -> projected, L2-normalized CLAP audio embedding (512-d). Frames are the
      windows, ``frame_rate = 1 / hop_s``.
    - ``kind="mert"`` (default ``m-a-p/MERT-v1-95M``, remote code in the cached
      snapshot): audio resampled to 24 kHz, encoded in chunks of at most
      ``clip_s`` seconds; frames are hidden states (75 Hz for MERT), the mean over
      all transformer layers (``layer=None``) or ``hidden_states[layer]``.

    Parameters
    ----------
    kind : {"clap", "mert"}
    model_id : str or None
        Hub id looked up in the local cache; default per ``kind``.
    model_path : path or None
        A local directory with the model (overrides ``model_id``).
    cache_dir : path or None
        Hugging Face cache directory (default: the hub's).
    clip_s, hop_s : float
        Window length / hop in seconds (CLAP windows; MERT chunk length).
    layer : int or None
        MERT hidden-state index (None: mean over layers 1..L).
    """

    DEFAULT_MODELS = {"clap": "laion/clap-htsat-unfused", "mert": "m-a-p/MERT-v1-95M"}

    def __init__(
        self,
        kind: str = "clap",
        *,
        model_id: str | None = None,
        model_path: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        clip_s: float = 10.0,
        hop_s: float = 1.0,
        layer: int | None = None,
    ) -> None:
        if kind not in self.DEFAULT_MODELS:
            raise ValueError(f"kind must be one of {list(self.DEFAULT_MODELS)}, got {kind!r}")
        self.kind = kind
        self.model_id = model_id or self.DEFAULT_MODELS[kind]
        self.name = kind
        self.stands_in_for = {
            "clap": "the paper's CLAP (text-aligned general audio/music semantics: genre, mood, instrumentation)",
            "mert": "the paper's MERT (self-supervised music model: pitch, timbre and rhythm at 75 Hz)",
        }[kind]
        self.clip_s, self.hop_s, self.layer = float(clip_s), float(hop_s), layer

        def load(tf, source, kw):
            fe = tf.AutoFeatureExtractor.from_pretrained(source, trust_remote_code=(kind == "mert"), **kw)
            if kind == "clap":
                return fe, tf.ClapModel.from_pretrained(source, **kw)
            return fe, tf.AutoModel.from_pretrained(source, trust_remote_code=True, **kw)

        import torch

        self._torch = torch
        self._fe, self._model = load_offline(self.model_id, load, cache_dir=cache_dir, model_path=model_path)
        self._model.eval()
        self.sample_rate = float(getattr(self._fe, "sampling_rate", 48000 if kind == "clap" else 24000))
        if kind == "clap":
            self.frame_rate = 1.0 / self.hop_s
            self.dim = int(self._model.config.projection_dim)
        else:
            cfg = self._model.config
            self.frame_rate = self.sample_rate / float(np.prod(getattr(cfg, "conv_stride", [320])))
            self.dim = int(cfg.hidden_size)

    def frames(self, y: np.ndarray, sr: float) -> np.ndarray:
        """CLAP window embeddings or MERT hidden states, shape (n_frames, dim), float32; ``y`` (as in
        :meth:`Encoder.frames`) is resampled to :attr:`sample_rate` first.

        CLAP: one projected embedding per ``clip_s`` window every ``hop_s`` seconds (at least one
        window); MERT: hidden states at :attr:`frame_rate` (75 Hz).
        """
        y = resample(_mono(y, sr), sr, self.sample_rate)
        torch = self._torch
        clip = max(1, int(round(self.clip_s * self.sample_rate)))
        with torch.no_grad():
            if self.kind == "clap":
                hop = max(1, int(round(self.hop_s * self.sample_rate)))
                starts = [0] if y.shape[0] <= clip else list(range(0, y.shape[0] - clip + 1, hop))
                out = []
                for b in range(0, len(starts), 16):
                    chunk = [y[s : s + clip] for s in starts[b : b + 16]]
                    inp = self._fe(chunk, sampling_rate=int(self.sample_rate), return_tensors="pt")
                    e = self._model.get_audio_features(**inp)
                    if not isinstance(e, torch.Tensor):  # newer transformers return an output object
                        e = e.pooler_output if getattr(e, "pooler_output", None) is not None else e[0]
                    out.append(e.float().cpu().numpy())
                return np.concatenate(out, axis=0).astype(np.float32)
            return mert_hidden_states(
                self._model, self._fe, y, sr=self.sample_rate, layer=self.layer, chunk_samples=clip
            )


def clap_encoder(**kw) -> HFEncoder:
    """The CLAP encoder (local Hugging Face cache only)."""
    return HFEncoder("clap", **kw)


def mert_encoder(**kw) -> HFEncoder:
    """The MERT encoder (local Hugging Face cache only)."""
    return HFEncoder("mert", **kw)


def get_encoder(name: str, *, n_threads: int | None = None, **options) -> Encoder:
    """Encoder by its registry name (:data:`aria.registry.ENCODERS`: ``"basic_pitch"``,
    ``"aisfx"``, ``"clap"``, ``"mert"``); ``options`` go to its constructor as keywords.

    ``n_threads`` caps the encoder's own thread pool where its constructor takes one
    (onnxruntime's defaults to every core, which oversubscribes a machine running one
    single-threaded job per core); the others run under the caller's ``torch.set_num_threads``.
    """
    import importlib
    import inspect

    from aria import registry

    module, _, attr = registry.encoder(name).factory.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if n_threads is not None and "n_threads" in inspect.signature(cls).parameters:
        options.setdefault("n_threads", int(n_threads))
    return cls(**options)
