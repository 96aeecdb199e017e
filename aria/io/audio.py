"""Audio file reading with strict validation, and silence measures.

:func:`load_audio` reads any format libsndfile understands (WAV, FLAC, OGG,
AIFF, ...) with :mod:`soundfile`, rejects broken inputs with a ``ValueError``
that names the file, and resamples to the requested rate with
:func:`librosa.resample` (``res_type='soxr_hq'``, librosa's default) when the
file's native rate differs. :func:`silence_fraction` / :func:`is_silent`
measure silence by frame RMS in dB relative to full scale.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import numpy as np

from aria.audio.signal import resample

__all__ = [
    "load_audio",
    "silence_fraction",
    "is_silent",
    "write_wav",
    "write_mp3",
    "SILENCE_THRESHOLD_DB",
    "SILENCE_FRAME_S",
]

#: Default silence threshold: frame RMS below -60 dBFS (see :func:`silence_fraction`).
SILENCE_THRESHOLD_DB = -60.0
#: Default silence frame length in seconds.
SILENCE_FRAME_S = 0.05

# libsndfile logs "data : <declared> (should be <present>)" for a WAV/AIFF/W64
# whose data chunk runs past the end of the file (it then silently reads only
# the bytes present). Streaming writers use 0 / 0xFFFFFFFF placeholders for an
# unknown length; those are not truncation.
_DATA_MISMATCH = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 1}


def _check_truncation(path: str, extra_info: str) -> None:
    m = _DATA_MISMATCH.search(extra_info or "")
    if m is None:
        return
    declared, present = int(m.group(1)), int(m.group(2))
    if present < declared and declared not in _PLACEHOLDER_SIZES:
        raise ValueError(
            f"{path}: truncated audio file: header declares {declared} data bytes but only {present} are present"
        )


def _check_ogg_complete(path: str) -> None:
    """An Ogg stream (Vorbis, Opus, FLAC in Ogg) ends with a page flagged end-of-stream, and
    every page is whole. A download cut short ends mid-page or without that flag, and libsndfile
    decodes what is there without an error: such a file is truncated.
    """
    with open(path, "rb") as fh:
        if fh.read(4) != b"OggS":
            return
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    # the last page is the one whose header (capture pattern, version 0) and body end exactly at
    # the end of the file (a stray "OggS" inside packet data would have to describe a page ending
    # exactly there)
    ok, end = False, len(tail)
    last = tail.rfind(b"OggS")
    while last >= 0 and not ok:
        if end - last >= 27 and tail[last + 4] == 0:
            n_seg = tail[last + 26]
            if end - last >= 27 + n_seg:
                length = 27 + n_seg + sum(tail[last + 27 : last + 27 + n_seg])
                if last + length == end:
                    ok = bool(tail[last + 5] & 0x04)  # end-of-stream flag
                    break
        last = tail.rfind(b"OggS", 0, last)
    if not ok:
        raise ValueError(f"{path}: truncated audio file: the Ogg stream ends without its last page (cut short)")


_TEXT_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[")


def _not_audio(path: str) -> str:
    """Why the file is plainly not audio (an HTML page or JSON saved under an audio name), or ''."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    probe = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if probe.startswith(_TEXT_STARTS):
        kind = "an HTML page" if b"html" in probe[:200] else "a text document"
        return f"it is {kind} (starts {head[:40]!r}), e.g. an error page saved by a download"
    return ""


@contextlib.contextmanager
def _quiet_native_stderr():
    """Send what native decoders write to file descriptor 2 (mpg123's notes) to a temporary
    file for the duration; yields it, for the caller to quote when it reports an error.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as cap:
        os.dup2(cap.fileno(), 2)
        try:
            yield cap
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load_audio(path, *, sr: int | None = 22050, mono: bool = True) -> np.ndarray:
    """Read an audio file as float32 samples at ``sr`` Hz.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file (any libsndfile format).
    sr : int or None, default 22050
        Target sample rate in Hz. When the file's native rate differs, the
        signal is resampled with ``librosa.resample(..., res_type='soxr_hq')``,
        so output length is ``ceil(n_native * sr / native_sr)`` samples. None
        keeps the native rate.
    mono : bool, default True
        Down-mix to mono by averaging the channels.

    Returns
    -------
    y : numpy.ndarray of float32
        Shape ``(n,)`` when ``mono`` (or the file has one channel and ``mono``);
        otherwise ``(channels, n)`` (librosa's layout). Amplitudes are in full
        scale units (integer PCM mapped to [-1, 1)), not normalized.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        With the path in the message, when the file is unreadable or corrupt
        (libsndfile cannot open/decode it, e.g. a zero-byte file or a cut
        header), truncated (a WAV/AIFF data chunk declared longer than the
        bytes present, see Notes), has zero samples, or contains NaN/inf
        samples.

    Notes
    -----
    libsndfile opens a WAV whose data was cut off and returns only the frames
    present; the truncation is detected from libsndfile's header log
    (``data : declared (should be present)``), ignoring the 0 / 0xFFFFFFFF
    placeholder sizes written by streaming encoders. An Ogg file (Vorbis, Opus)
    cut short decodes without error, so its last page is checked for being whole
    and flagged end-of-stream. A file that is plainly text (an HTML error page
    saved as ``.mp3``) is named as such; what native decoders print to stderr
    is kept out of the log and quoted in the error instead.
    """
    import soundfile as sf

    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: audio file not found")
    if os.path.isdir(p):
        raise ValueError(f"{p}: is a directory, not an audio file")
    if os.path.getsize(p) == 0:
        raise ValueError(f"{p}: unreadable audio file: zero-length file (0 bytes)")
    not_audio = _not_audio(p)
    if not_audio:
        raise ValueError(f"{p}: not an audio file: {not_audio}")
    with _quiet_native_stderr() as noise:  # the mp3 decoder prints notes of its own to stderr
        try:
            info = sf.info(p)
            data, native_sr = sf.read(p, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, EOFError, OSError) as exc:
            noise.seek(0)
            said = " ".join(noise.read().split())[:300]
            why = str(exc)
            if "does not exist or is not a regular file" in why:  # libsndfile's words for "cannot decode"
                why = f"the file exists but its bytes are not {Path(p).suffix or 'audio'} audio libsndfile can decode"
            raise ValueError(
                f"{p}: unreadable or corrupt audio file: {why}" + (f" (decoder: {said})" if said else "")
            ) from exc
    _check_truncation(p, getattr(info, "extra_info", ""))
    _check_ogg_complete(p)
    if data.shape[0] == 0:
        raise ValueError(f"{p}: audio file has zero samples")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{p}: audio file contains non-finite (NaN/inf) samples")
    y = np.ascontiguousarray(data.T)  # (channels, n)
    if mono:
        y = y.mean(axis=0, dtype=np.float32)
    if sr is not None and int(native_sr) != int(sr):
        y = resample(y, native_sr, sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def _frame_rms_db(y: np.ndarray, sr: int, frame_s: float) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(axis=0)
    elif y.ndim != 1:
        raise ValueError(f"expected a 1-D or (channels, n) signal, got shape {y.shape}")
    if sr <= 0 or frame_s <= 0:
        raise ValueError(f"sr and frame_s must be positive, got sr={sr}, frame_s={frame_s}")
    n = y.shape[0]
    if n == 0:
        return np.zeros(0)
    flen = max(1, int(round(frame_s * sr)))
    n_frames = -(-n // flen)
    pad = np.zeros(n_frames * flen)
    pad[:n] = y * y
    sums = pad.reshape(n_frames, flen).sum(axis=1)
    counts = np.full(n_frames, flen, dtype=np.float64)
    counts[-1] = n - (n_frames - 1) * flen  # the last frame may be partial
    ms = sums / counts
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(ms)  # = 20 log10(rms); -inf for digital silence


def silence_fraction(
    y, *, sr: int, frame_s: float = SILENCE_FRAME_S, threshold_db: float = SILENCE_THRESHOLD_DB
) -> float:
    """Share of frames whose RMS level is below ``threshold_db`` dBFS.

    Parameters
    ----------
    y : array_like, shape (n,) or (channels, n)
        Signal in full-scale units (1.0 = digital full scale); multi-channel
        input is averaged to mono first.
    sr : int
        Sample rate in Hz.
    frame_s : float, default 0.05
        Frame length in seconds; frames are non-overlapping,
        ``round(frame_s * sr)`` samples each, the last one possibly shorter.
    threshold_db : float, default -60.0
        Silence threshold in dB relative to full scale.

    Returns
    -------
    float
        In [0, 1]. A frame is silent when ``20 log10(rms) < threshold_db`` with
        ``rms = sqrt(mean(y**2))`` over the frame (so a full-scale sine is at
        -3.01 dBFS, a full-scale square wave at 0 dBFS; digital zeros are
        -inf). An empty signal has fraction 1.0.
    """
    db = _frame_rms_db(y, sr, frame_s)
    if db.size == 0:
        return 1.0
    return float(np.mean(db < threshold_db))


def is_silent(y, *, sr: int, frame_s: float = SILENCE_FRAME_S, threshold_db: float = SILENCE_THRESHOLD_DB) -> bool:
    """True when every frame is silent, i.e. ``silence_fraction(...) == 1``.

    Same parameters and conventions as :func:`silence_fraction`.
    """
    return silence_fraction(y, sr=sr, frame_s=frame_s, threshold_db=threshold_db) == 1.0


def write_wav(path, y, sr: int) -> None:
    """Write a waveform as a 16-bit PCM WAV file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; parent folders are created.
    y : array_like, shape (n_samples,) or (n_samples, n_channels), float
        Samples in [-1, 1]; values outside are clipped.
    sr : int
        Sample rate in Hz.

    Raises
    ------
    ValueError
        If ``y`` has non-finite values or more than 2 dimensions, or ``sr`` is
        not positive.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2):
        raise ValueError(f"{path}: waveform must have shape (n,) or (n, channels), got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"{path}: waveform has non-finite samples")
    if int(sr) <= 0:
        raise ValueError(f"{path}: sample rate must be positive, got {sr}")
    import soundfile as sf

    from aria.io.stores import atomic_file

    y = np.clip(y, -1.0, 1.0)
    with atomic_file(path) as tmp:
        sf.write(tmp, y, int(sr), subtype="PCM_16", format="WAV")


def write_mp3(path, y, sr: int) -> None:
    """Write a mono or stereo waveform as MP3 (the report's players), atomically.

    About 4 KB per second of music (libsndfile's LAME at compression level 0.8 of 1); the
    same samples give the same bytes (unlike Ogg, whose stream serial is random). Report media
    only, never analysis input.
    """
    y = np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0)
    if not np.isfinite(y).all():
        raise ValueError(f"{path}: waveform has non-finite samples")
    import soundfile as sf

    from aria.io.stores import atomic_file

    with atomic_file(path) as tmp:
        sf.write(tmp, y, int(sr), format="MP3", subtype="MPEG_LAYER_III", compression_level=0.8)
