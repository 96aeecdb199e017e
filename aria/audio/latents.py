"""A fixed, invertible latent representation of audio for the diffusion experiment.

Stable Audio's DiT works on the latents of a trained VAE (AutoencoderOobleck: 64 channels, 2048x
down-sampling). Aria's demo uses a *fixed* representation instead, chosen because it costs no
training, is exactly invertible (generated latents decode to audio with no decoder error of its
own, so what an attribution sees is the diffusion model's doing) and is the same on every machine:

1. the waveform is resampled to ``sr`` (default 8 kHz: the demo's rendered tracks keep their
   melody and harmony, below 4 kHz);
2. cut into non-overlapping frames of ``frame`` samples (256: 32 ms, 31.25 frames per second);
3. each frame becomes its orthonormal DCT-II (``frame`` channels), divided channel by channel by
   the training set's standard deviation (:meth:`FrameDCT.fit`), so the diffusion model sees
   unit-scale data.

Shapes: a waveform (n,) float becomes latents (C = ``frame``, F = ceil(n / ``frame``)); the tail
of the last frame is zero-padded. :meth:`FrameDCT.decode` inverts it exactly (to float round-off)
on the resampled signal. A user with a Stable Audio VAE passes its latents instead (docs/methods.md).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct, idct

__all__ = ["FrameDCT", "OobleckCodec", "get_codec", "clip_plan", "pad_latents"]


class FrameDCT:
    """Frame-wise orthonormal DCT-II of a waveform, scaled per channel.

    Parameters
    ----------
    frame : int, keyword-only
        Samples per frame = latent channels C.
    sr : int, keyword-only
        Sample rate of the waveforms it encodes (Hz).
    scale : array (frame,), optional
        Per-channel divisor; default ones (:meth:`fit` sets it).
    """

    def __init__(self, *, frame: int = 256, sr: int = 8000, scale=None):
        if int(frame) < 1:
            raise ValueError(f"frame must be at least 1 sample, got {frame}")
        self.frame, self.sr = int(frame), int(sr)
        self.scale = np.ones(self.frame) if scale is None else np.asarray(scale, dtype=np.float64)
        if self.scale.shape != (self.frame,) or not np.all(self.scale > 0):
            raise ValueError(f"scale must be {self.frame} positive numbers, got shape {self.scale.shape}")

    @property
    def frames_per_second(self) -> float:
        """Latent frames per second of audio."""
        return self.sr / self.frame

    def n_frames(self, n_samples: int) -> int:
        """F of a waveform of ``n_samples`` samples."""
        return -(-int(n_samples) // self.frame)

    def _frames(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise ValueError(f"expected a mono waveform (n,), got shape {y.shape}")
        n = self.n_frames(len(y))
        out = np.zeros(n * self.frame)
        out[: len(y)] = y
        return out.reshape(n, self.frame)

    def encode(self, y) -> np.ndarray:
        """Latents float64 (C, F) of a mono waveform (n,) at ``sr``."""
        return (dct(self._frames(y), type=2, norm="ortho", axis=1) / self.scale).T

    def decode(self, z, n_samples: int | None = None) -> np.ndarray:
        """Waveform float64 (n,) of latents (C, F); ``n_samples`` cuts the padded tail."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != self.frame:
            raise ValueError(f"expected latents ({self.frame}, F), got shape {z.shape}")
        y = idct(z.T * self.scale, type=2, norm="ortho", axis=1).reshape(-1)
        return y if n_samples is None else y[: int(n_samples)]

    def fit(self, waveforms, *, floor: float = 1e-4) -> FrameDCT:
        """Set ``scale`` to each channel's standard deviation over ``waveforms`` (iterable of (n,)),
        at least ``floor`` times the largest (a channel with no energy keeps a finite divisor).
        """
        s1 = np.zeros(self.frame)
        s2 = np.zeros(self.frame)
        count = 0
        for y in waveforms:
            c = dct(self._frames(y), type=2, norm="ortho", axis=1)
            s1 += c.sum(0)
            s2 += (c**2).sum(0)
            count += len(c)
        if count == 0:
            raise ValueError("FrameDCT.fit: no waveform")
        var = np.maximum(s2 / count - (s1 / count) ** 2, 0.0)
        std = np.sqrt(var)
        self.scale = np.maximum(std, floor * max(float(std.max()), np.finfo(float).tiny))
        return self


class OobleckCodec:
    """A Stable Audio VAE (diffusers' ``AutoencoderOobleck``) from a local folder, with
    :class:`FrameDCT`'s interface: the latents of a user's own Stable-Audio-style checkpoint.

    Parameters
    ----------
    path : str, keyword-only
        A ``save_pretrained`` folder of ``AutoencoderOobleck`` (a Stable Audio pipeline's ``vae``),
        read offline: nothing is downloaded.

    Notes
    -----
    ``sr`` is the VAE's ``sampling_rate``, ``frame`` its hop (the product of its down-sampling
    ratios) and the channels its ``decoder_input_channels``. A mono waveform is copied to every audio
    channel; decoding averages them. Latents are the posterior means. Not exactly invertible: the
    VAE's reconstruction error enters generated audio.
    """

    def __init__(self, *, path: str):
        from pathlib import Path

        from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck

        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: not an AutoencoderOobleck folder (no config.json); save one with save_pretrained "
                "(a Stable Audio pipeline's vae folder)"
            )
        self.path = str(path)
        self.vae = AutoencoderOobleck.from_pretrained(path, local_files_only=True).eval()
        cfg = self.vae.config
        self.sr = int(cfg.sampling_rate)
        self.frame = int(np.prod(cfg.downsampling_ratios))
        self.channels = int(cfg.decoder_input_channels)
        self.audio_channels = int(cfg.audio_channels)

    frames_per_second = FrameDCT.frames_per_second
    n_frames = FrameDCT.n_frames

    def encode(self, y) -> np.ndarray:
        """Latents float64 (C, F) of a mono waveform (n,) at ``sr`` (padded to whole frames)."""
        import torch

        y = np.asarray(y, dtype=np.float32)
        n = self.n_frames(len(y)) * self.frame
        x = np.zeros((1, self.audio_channels, n), np.float32)
        x[:, :, : len(y)] = y
        with torch.no_grad():
            z = self.vae.encode(torch.from_numpy(x)).latent_dist.mean
        return z[0].double().numpy()

    def decode(self, z, n_samples: int | None = None) -> np.ndarray:
        """Waveform float64 (n,) of latents (C, F), the audio channels averaged; ``n_samples`` cuts it."""
        import torch

        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[0] != self.channels:
            raise ValueError(f"expected latents ({self.channels}, F), got shape {z.shape}")
        with torch.no_grad():
            y = self.vae.decode(torch.from_numpy(z)[None]).sample[0].mean(0).double().numpy()
        return y if n_samples is None else y[: int(n_samples)]

    def fit(self, waveforms) -> OobleckCodec:
        """Nothing to fit: the VAE is trained (kept for :class:`FrameDCT`'s interface)."""
        return self


def get_codec(kind: str = "dct", **options):
    """The latent representation of config ``diffusion.latents``: ``dct`` (:class:`FrameDCT`, with ``sr``
    and ``frame``) or ``oobleck`` (:class:`OobleckCodec`, with ``path``).
    """
    if kind == "dct":
        return FrameDCT(**{k: v for k, v in options.items() if k in ("sr", "frame", "scale")})
    if kind == "oobleck":
        return OobleckCodec(path=options["path"])
    raise ValueError(f"diffusion.latents.kind must be 'dct' or 'oobleck', got {kind!r}")


def clip_plan(durations_s, *, min_s: float, max_s: float, frames_per_second: float, random_state) -> tuple:
    """Seeded variable-length crops, one per track: the diffusion experiment's training clips.

    Each clip's length is drawn uniformly from [``min_s``, min(``max_s``, track)] and rounded down
    to whole latent frames; its start uniformly from where it fits.

    Parameters
    ----------
    durations_s : array (N,), seconds
    min_s, max_s : float, keyword-only
        Clip lengths in seconds; ``max_s`` is the length every clip is padded to.
    frames_per_second : float, keyword-only
        Latent frames per second (:attr:`FrameDCT.frames_per_second`).
    random_state : int, keyword-only

    Returns
    -------
    start_s, length_s : float arrays (N,), seconds; ``length_s * frames_per_second`` is whole.

    Raises
    ------
    ValueError
        When a track is shorter than ``min_s`` or the bounds are not 0 < min_s <= max_s.
    """
    d = np.asarray(durations_s, dtype=np.float64)
    if not 0 < min_s <= max_s:
        raise ValueError(f"clip lengths need 0 < min_s <= max_s, got min_s={min_s}, max_s={max_s}")
    if np.any(d < min_s):
        raise ValueError(f"{int(np.sum(d < min_s))} track(s) are shorter than the shortest clip ({min_s} s)")
    rng = np.random.default_rng(random_state)
    length = rng.uniform(min_s, np.minimum(max_s, d))
    length = np.maximum(np.floor(length * frames_per_second), 1) / frames_per_second
    start = rng.uniform(0.0, 1.0, len(d)) * (d - length)
    return start, length


def pad_latents(latents, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Latents of variable length (each (C, F_i)) zero-padded to one array, with their frame mask.

    Returns
    -------
    x0 : float32 (N, C, max_frames)
    mask : bool (N, max_frames), True on real frames

    Raises
    ------
    ValueError
        Naming the item when F_i > ``max_frames``.
    """
    latents = list(latents)
    if not latents:
        raise ValueError("pad_latents: no latents")
    c = latents[0].shape[0]
    x0 = np.zeros((len(latents), c, int(max_frames)), np.float32)
    mask = np.zeros((len(latents), int(max_frames)), bool)
    for i, z in enumerate(latents):
        if z.shape[0] != c or z.shape[1] > max_frames:
            raise ValueError(f"pad_latents: item {i} has shape {z.shape}, expected ({c}, <= {max_frames})")
        x0[i, :, : z.shape[1]] = z
        mask[i, : z.shape[1]] = True
    return x0, mask
