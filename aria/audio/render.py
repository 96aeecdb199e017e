"""Render note lists to audio with a General MIDI SoundFont, and write WAV files.

Rendering (:func:`render_midi`)
-------------------------------
Offline, sample-accurate synthesis with TinySoundFont (the ``tinysoundfont``
package; no audio device is opened):

* Each note ``track`` is played with the General MIDI program (0..127, bank 0)
  that ``programs`` gives for it. Tracks that share a program share one MIDI
  channel, so at most 15 distinct programs fit in one piece (channel 10, the
  drum channel, is never used; there is no drum rendering).
* Note-on and note-off times are rounded to the nearest sample; a note always
  sounds for at least one sample. Velocity 0 notes are silent.
* The stereo synthesis output is mixed down to mono as ``(left + right) / 2``
  and then scaled so that its peak is ``peak_dbfs`` (default -1 dBFS, i.e.
  ``10 ** (-1 / 20) = 0.891``). All-silent output stays all zeros.
* Output length: ``round(duration_s * sr)`` samples when ``duration_s`` is
  given (notes beyond it are cut), else ``round((last offset + tail_s) * sr)``
  so that the release of the last note is kept.

The SoundFont is chosen as: the ``soundfont`` argument, else the environment
variable ``ARIA_SOUNDFONT``, else :data:`DEFAULT_SF2` (Debian's
``fluid-soundfont-gm``). A parsed SoundFont is cached per process, keyed by
path, size, modification time and sample rate.

Writing a waveform to disk is :func:`aria.io.audio.write_wav`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from aria.symbolic.notes import as_notes

__all__ = ["DEFAULT_SF2", "SOUNDFONT_ENV", "resolve_soundfont", "render_midi", "render_window", "WINDOW_RELEASE_S"]

#: Debian/Ubuntu package ``fluid-soundfont-gm``.
DEFAULT_SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
#: Environment variable that overrides :data:`DEFAULT_SF2`.
SOUNDFONT_ENV = "ARIA_SOUNDFONT"

_DRUM_CHANNEL = 9
_CHANNELS = [c for c in range(16) if c != _DRUM_CHANNEL]
_LOCK = threading.Lock()
_FLUSH_S = 0.05  # > TinySoundFont's 10 ms fast release


def resolve_soundfont(soundfont=None) -> Path:
    """Return the SoundFont path to use, checking that the file exists.

    Parameters
    ----------
    soundfont : str or os.PathLike, optional
        Explicit path. ``None``: ``$ARIA_SOUNDFONT`` if set, else
        :data:`DEFAULT_SF2`.

    Raises
    ------
    FileNotFoundError
        With instructions to install ``fluid-soundfont-gm`` or point
        ``ARIA_SOUNDFONT`` / ``soundfont=`` at an .sf2 file.
    """
    if soundfont is None:
        soundfont = os.environ.get(SOUNDFONT_ENV) or DEFAULT_SF2
    path = Path(soundfont).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"SoundFont not found: {path}. Install Debian's fluid-soundfont-gm "
            f"(apt-get install fluid-soundfont-gm, which provides {DEFAULT_SF2}) "
            f"or set the environment variable {SOUNDFONT_ENV} (or pass soundfont=) "
            f"to a General MIDI .sf2 file."
        )
    return path


@functools.lru_cache(maxsize=4)
def _load_synth(path: str, size: int, mtime_ns: int, sr: int):
    """A TinySoundFont synthesizer with ``path`` loaded (cached; see caller)."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sr, gain=0.0)
    try:
        sfid = synth.sfload(path)
    except Exception as exc:  # tinysoundfont raises a bare Exception on bad files
        raise ValueError(f"cannot load SoundFont {path}: {exc}") from exc
    return synth, sfid


def _channel_map(tracks: np.ndarray, programs) -> tuple[dict[int, int], dict[int, int]]:
    """Map each track to a channel and each used channel to its program."""
    track_channel: dict[int, int] = {}
    program_channel: dict[int, int] = {}
    for t in np.unique(tracks).tolist():
        try:
            prog = programs[t] if isinstance(programs, Mapping) else programs[int(t)]
        except (KeyError, IndexError):
            raise ValueError(f"no General MIDI program given for track {t}") from None
        if isinstance(prog, (bool, np.bool_)) or int(prog) != prog or not 0 <= int(prog) <= 127:
            raise ValueError(f"track {t}: General MIDI program must be an integer 0..127, got {prog!r}")
        prog = int(prog)
        if prog not in program_channel:
            if len(program_channel) == len(_CHANNELS):
                raise ValueError(
                    f"a piece can use at most {len(_CHANNELS)} distinct programs "
                    f"(MIDI channels without the drum channel)"
                )
            program_channel[prog] = _CHANNELS[len(program_channel)]
        track_channel[int(t)] = program_channel[prog]
    return track_channel, {c: p for p, c in program_channel.items()}


def render_midi(
    notes,
    *,
    programs,
    sr: int = 22050,
    soundfont=None,
    duration_s: float | None = None,
    tail_s: float = 1.0,
    peak_dbfs: float = -1.0,
) -> np.ndarray:
    """Synthesise a note list to a mono waveform.

    Parameters
    ----------
    notes : numpy.ndarray, shape (n,), dtype NOTE_DTYPE
        Onsets/offsets in seconds (see :mod:`aria.symbolic.notes`). May be empty.
    programs : Mapping[int, int] or Sequence[int]
        General MIDI program (0..127, 0-based, bank 0) for each ``track`` id
        present in ``notes``; a sequence is indexed by track id.
    sr : int
        Sample rate in Hz.
    soundfont : str or os.PathLike, optional
        .sf2 file; default ``$ARIA_SOUNDFONT`` or :data:`DEFAULT_SF2`.
    duration_s : float, optional
        Output length in seconds (exactly ``round(duration_s * sr)`` samples).
        Default: last note offset plus ``tail_s``.
    tail_s : float
        Seconds of release kept after the last note off when ``duration_s``
        is None.
    peak_dbfs : float
        Peak level of the output in dB relative to full scale (1.0).

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float32
        Mono waveform in [-1, 1], peak ``10 ** (peak_dbfs / 20)`` unless silent.

    Raises
    ------
    FileNotFoundError
        If the SoundFont file is missing.
    ValueError
        On a track without a program, a program outside 0..127, more than 15
        distinct programs, or a bad ``sr`` / ``duration_s``.
    """
    notes = as_notes(notes)
    sr = int(sr)
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if duration_s is None:
        end_s = (float(notes["offset"].max()) if notes.size else 0.0) + float(tail_s)
    else:
        end_s = float(duration_s)
    if not np.isfinite(end_s) or end_s < 0:
        raise ValueError(f"duration must be finite and >= 0 s, got {end_s}")
    n_samples = int(round(end_s * sr))
    track_channel, channel_program = _channel_map(notes["track"], programs)
    path = resolve_soundfont(soundfont)

    # Events as (sample, kind, channel, key, velocity); kind 0 = off, 1 = on, so
    # at equal times note-offs come first (a repeated pitch is re-struck).
    notes = notes[notes["velocity"] > 0]
    on = np.round(notes["onset"] * sr).astype(np.int64)
    off = np.maximum(np.round(notes["offset"] * sr).astype(np.int64), on + 1)
    chan = np.array([track_channel[int(t)] for t in notes["track"]], dtype=np.int64)
    keep = on < n_samples
    on, off, chan = on[keep], off[keep], chan[keep]
    pitch = notes["pitch"][keep].astype(np.int64)
    vel = notes["velocity"][keep].astype(np.int64)
    ev_t = np.concatenate([on, off])
    ev_kind = np.concatenate([np.ones_like(on), np.zeros_like(off)])
    ev_chan = np.concatenate([chan, chan])
    ev_key = np.concatenate([pitch, pitch])
    ev_vel = np.concatenate([vel, np.zeros_like(vel)])
    order = np.lexsort((ev_kind, ev_t))

    buf = np.zeros((n_samples, 2), dtype=np.float32)
    view = memoryview(buf).cast("B")
    frame_bytes = buf.itemsize * 2
    stat = path.stat()
    with _LOCK:
        synth, sfid = _load_synth(str(path.resolve()), stat.st_size, stat.st_mtime_ns, sr)
        for c in range(16):
            synth.sounds_off(c)  # stop voices left over from a previous piece
            synth.control_change(c, 121, 0)  # reset all controllers
        # "sounds off" is a 10 ms fade in TinySoundFont: render it away
        synth.generate_simple(max(1, int(_FLUSH_S * sr)))
        for c, prog in channel_program.items():
            try:
                synth.program_select(c, sfid, 0, prog)
            except RuntimeError as exc:
                raise ValueError(f"SoundFont {path} has no bank-0 preset {prog}: {exc}") from exc
        pos = 0
        for i in order.tolist():
            t = int(ev_t[i])
            if t >= n_samples:
                break
            if t > pos:
                synth.generate_simple(t - pos, buffer=view[pos * frame_bytes : t * frame_bytes])
                pos = t
            if ev_kind[i]:
                synth.noteon(int(ev_chan[i]), int(ev_key[i]), int(ev_vel[i]))
            else:
                synth.noteoff(int(ev_chan[i]), int(ev_key[i]))
        if n_samples > pos:
            synth.generate_simple(n_samples - pos, buffer=view[pos * frame_bytes :])
    del view

    y = buf.mean(axis=1, dtype=np.float64)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0:
        y *= 10.0 ** (float(peak_dbfs) / 20.0) / peak
    return y.astype(np.float32)


#: Release kept after a rendered window's end (s), faded out: a card's player lasts the window plus this.
WINDOW_RELEASE_S = 0.3


def render_window(
    notes,
    *,
    duration_s: float,
    programs,
    sr: int = 22050,
    release_s: float = WINDOW_RELEASE_S,
    soundfont=None,
) -> np.ndarray:
    """Render a window of notes to exactly the window's length plus a short faded release.

    Notes that sound past the window's end are released at the end (their offsets are cut to
    ``duration_s``), the synthesis runs ``release_s`` further, and that tail is faded out
    linearly to 0, so that a window claimed as ``t0``-``t1`` plays ``t1 - t0 + release_s``
    seconds, not the full length of its last notes and their release.

    Parameters
    ----------
    notes : numpy.ndarray, shape (n,), dtype NOTE_DTYPE
        Times relative to the window's start (s).
    duration_s : float, keyword-only
        The window's length (s), >= 0.
    programs, sr, soundfont
        As for :func:`render_midi`.
    release_s : float, keyword-only
        Seconds kept after the window's end, faded out (default :data:`WINDOW_RELEASE_S`).

    Returns
    -------
    numpy.ndarray, shape (round((duration_s + release_s) * sr),), float32
    """
    duration_s, release_s = float(duration_s), float(release_s)
    if not (np.isfinite(duration_s) and duration_s >= 0 and np.isfinite(release_s) and release_s >= 0):
        raise ValueError(f"window duration and release must be finite and >= 0 s, got {duration_s}, {release_s}")
    notes = as_notes(notes).copy()
    notes = notes[notes["onset"] < duration_s]
    notes["offset"] = np.minimum(notes["offset"], duration_s)
    y = render_midi(notes, programs=programs, sr=sr, soundfont=soundfont, duration_s=duration_s + release_s)
    start = int(round(duration_s * int(sr)))
    tail = y.size - start
    if tail > 0:
        y[start:] *= np.linspace(1.0, 0.0, tail, dtype=np.float32)
    return y
