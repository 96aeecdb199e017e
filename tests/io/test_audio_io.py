"""Report media: MP3 players decode back to the signal and are byte-identical across runs."""

import numpy as np
import soundfile as sf

from aria.io.audio import write_mp3


def test_write_mp3_is_deterministic_and_decodes(tmp_path):
    sr = 22050
    t = np.arange(2 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_mp3(tmp_path / "a.mp3", y, sr)
    write_mp3(tmp_path / "b.mp3", y, sr)
    assert (tmp_path / "a.mp3").read_bytes() == (tmp_path / "b.mp3").read_bytes()
    z, sr2 = sf.read(tmp_path / "a.mp3")
    assert sr2 == sr and abs(len(z) - len(y)) < 0.1 * sr
    # a 440 Hz tone comes back as a 440 Hz tone of about the same level
    spec = np.abs(np.fft.rfft(z[: len(y)]))
    assert abs(np.argmax(spec) * sr / len(y[: len(z)]) - 440) < 5
    assert abs(np.sqrt(np.mean(z**2)) - 0.3 / np.sqrt(2)) < 0.03
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind
