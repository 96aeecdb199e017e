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


def _ogg_pages(data: bytes):
    """(start, end, header_type) of each Ogg page, parsed by hand from the format's header."""
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS"
        n_seg = data[pos + 26]
        end = pos + 27 + n_seg + sum(data[pos + 27 : pos + 27 + n_seg])
        pages.append((pos, end, data[pos + 5]))
        pos = end
    return pages


def test_ogg_cut_anywhere_is_refused_and_a_whole_one_loads(tmp_path):
    import pytest

    from aria.io.audio import load_audio

    sr = 22050
    t = np.arange(20 * sr) / sr
    sf.write(tmp_path / "full.ogg", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="OGG")
    data = (tmp_path / "full.ogg").read_bytes()
    pages = _ogg_pages(data)
    assert len(pages) > 4 and pages[-1][2] & 0x04 and not any(p[2] & 0x04 for p in pages[:-1])
    assert load_audio(tmp_path / "full.ogg", sr=sr).shape == (20 * sr,)
    # cut on a page boundary (every page whole, none flagged end-of-stream) and mid-page
    for name, cut in (("boundary", pages[len(pages) // 2][1]), ("midpage", (pages[3][0] + pages[3][1]) // 2)):
        (tmp_path / f"{name}.ogg").write_bytes(data[:cut])
        with pytest.raises(ValueError, match=rf"{name}\.ogg: truncated audio file: the Ogg stream ends without"):
            load_audio(tmp_path / f"{name}.ogg", sr=sr)
