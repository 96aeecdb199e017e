"""Symbolic window players (evidence cards): the MP3 lasts the window it claims, plus a short faded release."""

import numpy as np
import pytest

from aria.audio.render import WINDOW_RELEASE_S, render_midi, render_window, resolve_soundfont
from aria.symbolic.notes import NOTE_DTYPE

try:
    resolve_soundfont()
    HAVE_SF2 = True
except FileNotFoundError:
    HAVE_SF2 = False

pytestmark = pytest.mark.skipif(not HAVE_SF2, reason="no General MIDI SoundFont installed")
SR = 22050
#: an MPEG layer III frame (1152 samples): the most the encoder's padding can add after decoding
MP3_FRAME_S = 1152 / SR


def _window_notes():
    """A 2.0 s window whose last chord is held 4.5 s past its end (the case the user heard)."""
    n = np.zeros(4, dtype=NOTE_DTYPE)
    n["onset"] = [0.0, 0.5, 1.5, 1.5]
    n["offset"] = [0.5, 1.5, 6.5, 6.5]
    n["pitch"] = [60, 64, 67, 72]
    n["velocity"] = 90
    return n


def test_window_render_is_cut_to_the_window_with_a_faded_release():
    notes, dur = _window_notes(), 2.0
    full = render_midi(notes, programs={0: 0}, sr=SR)
    assert full.size / SR > dur + 4.0  # what the cards played before: the held notes and their release
    y = render_window(notes, duration_s=dur, programs={0: 0}, sr=SR)
    assert y.size == round((dur + WINDOW_RELEASE_S) * SR)
    assert np.abs(y[: int(dur * SR)]).max() > 0.1  # the window itself sounds
    assert y[-1] == 0.0 and np.abs(y[-int(0.02 * SR) :]).max() < 0.1 * np.abs(y).max()  # faded out
    # notes beyond the window are not played
    late = np.concatenate([notes, notes[:1]])
    late["onset"][-1], late["offset"][-1] = 2.5, 3.0
    np.testing.assert_array_equal(render_window(late, duration_s=dur, programs={0: 0}, sr=SR), y)


def test_window_mp3_decodes_to_the_window_length(tmp_path):
    import soundfile as sf

    from aria.io.audio import write_mp3

    for dur in (2.0, 3.7):
        write_mp3(tmp_path / "w.mp3", render_window(_window_notes(), duration_s=dur, programs={0: 0}, sr=SR), SR)
        got = sf.info(str(tmp_path / "w.mp3")).frames / SR
        assert dur <= got <= dur + WINDOW_RELEASE_S + MP3_FRAME_S, (dur, got)
    with pytest.raises(ValueError, match="finite and >= 0"):
        render_window(_window_notes(), duration_s=-1.0, programs={0: 0})
