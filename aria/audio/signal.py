"""Small waveform helpers shared by tokenizers, encoders and features."""

from __future__ import annotations

import numpy as np

__all__ = ["as_waveform", "resample"]


def resample(y: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resample a float32 waveform (last axis = time) with librosa's soxr_hq; no-op if rates match.

    Parameters
    ----------
    y : float array, shape (..., n)
        Waveform; leading axes (channels) are resampled independently.
    orig_sr, target_sr : float
        Sample rates of ``y`` and of the result (Hz).

    Returns
    -------
    float32 array, shape (..., ~n * target_sr / orig_sr)
        ``y`` itself (unconverted) when the rates are equal.
    """
    if float(orig_sr) == float(target_sr):
        return y
    import librosa

    return librosa.resample(
        np.asarray(y, dtype=np.float32), orig_sr=float(orig_sr), target_sr=float(target_sr), res_type="soxr_hq", axis=-1
    ).astype(np.float32)


def as_waveform(y, *, mix_channels: bool = False) -> np.ndarray:
    """Check a waveform and return it as float32, shape (n,).

    Parameters
    ----------
    y : array, shape (n,), or (channels, n) when ``mix_channels``
    mix_channels : bool, keyword-only
        Average channels-first multichannel input to mono; otherwise only mono
        (n,) input is accepted.

    Raises
    ------
    ValueError
        Wrong shape, no samples, or NaN/inf samples.
    """
    y = np.asarray(y, dtype=np.float32)
    if mix_channels and y.ndim == 2:
        y = y.mean(axis=0)
    if y.ndim != 1:
        accepted = "(n,) or (channels, n)" if mix_channels else "mono, shape (n,)"
        raise ValueError(f"audio must be {accepted}; got shape {y.shape}")
    if y.size == 0:
        raise ValueError("audio is empty")
    if not np.all(np.isfinite(y)):
        raise ValueError("audio contains NaN or inf samples")
    return y
