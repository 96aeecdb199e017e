"""Small waveform helpers shared by tokenizers, encoders and features."""

from __future__ import annotations

import numpy as np

__all__ = ["resample"]


def resample(y: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resample a float32 waveform (last axis = time) with librosa's soxr_hq; no-op if rates match."""
    if float(orig_sr) == float(target_sr):
        return y
    import librosa

    return librosa.resample(np.asarray(y, dtype=np.float32), orig_sr=float(orig_sr),
                            target_sr=float(target_sr), res_type="soxr_hq", axis=-1).astype(np.float32)
