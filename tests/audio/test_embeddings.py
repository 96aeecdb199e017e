"""Embedding baselines (aria.audio.encoders) against independent references.

Scoring functions are checked against brute-force loops over explicit window
pairs; the encoders against physical expectations (a 440 Hz tone is MIDI 69) and,
for basic-pitch, against the package's own ``run_inference`` on a file.
"""

import importlib.util
import sys
import types

import numpy as np
import pytest

from aria.attribution.embedding import all_against_all_scores, cosine_scores, window_embeddings
from aria.audio.encoders import AisfxEncoder, BasicPitchEncoder, HFEncoder, get_encoder


def _cos(u, v):
    nu, nv = np.sqrt(np.dot(u, u)), np.sqrt(np.dot(v, v))
    return 0.0 if nu == 0 or nv == 0 else float(np.dot(u, v) / (nu * nv))


def _tone(f0, *, sr, dur, amp=0.3, harmonics=(1, 2, 3)):
    """Harmonic tone: sum of sinusoids at k * f0 with amplitude amp / k, float32."""
    t = np.arange(int(round(dur * sr))) / sr
    y = sum(amp / k * np.sin(2 * np.pi * k * f0 * t) for k in harmonics)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms fades, no clicks
    return (y * fade).astype(np.float32)


# --------------------------------------------------------------------------- scoring


def test_cosine_scores_matches_double_loop():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((7, 5))
    B = rng.standard_normal((4, 5))
    A[3] = 0.0  # zero-norm row -> cosine 0 by convention
    S = cosine_scores(A, B)
    assert S.shape == (7, 4)
    for t in range(7):
        for q in range(4):
            assert S[t, q] == pytest.approx(_cos(A[t], B[q]), abs=1e-12)
    assert np.all(S[3] == 0.0)


def test_cosine_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="dims differ"):
        cosine_scores(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        cosine_scores(np.ones(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        cosine_scores(np.full((2, 3), np.nan), np.ones((2, 3)))


def test_window_embeddings_hand_case():
    # 1 frame/s, 3 s windows, 2 s hop: L = 3, H = 2; 8 frames -> starts 0, 2, 4
    F = np.arange(8, dtype=float)[:, None] * np.array([[1.0, -2.0]])
    W = window_embeddings(F, 1.0, window_s=3, hop_s=2)
    np.testing.assert_allclose(W, [[1.0, -2.0], [3.0, -6.0], [5.0, -10.0]])
    # shorter than one window -> one window, the mean of all frames
    np.testing.assert_allclose(window_embeddings(F[:2], 1.0, window_s=3, hop_s=2), [[0.5, -1.0]])
    # exactly one window long -> one window
    np.testing.assert_allclose(window_embeddings(F[:3], 1.0, window_s=3, hop_s=2), [[1.0, -2.0]])
    # defaults are docs/spec.md §8's 10 s / 1 s: 2 frames/s, 30 frames -> L = 20, H = 2 -> 6 windows
    assert window_embeddings(np.ones((30, 4)), 2.0).shape == (6, 4)
    with pytest.raises(ValueError, match="empty"):
        window_embeddings(np.zeros((0, 2)), 1.0)


def _brute_windows(F, L, H):
    n = F.shape[0]
    if n <= L:
        return [F.mean(axis=0)]
    return [F[s : s + L].mean(axis=0) for s in range(0, n - L + 1, H)]


@pytest.mark.parametrize("blocks", [dict(), dict(block_rows=5, block_cols=3)])
def test_all_against_all_matches_brute_force(blocks):
    rng = np.random.default_rng(1)
    rate, window_s, hop_s = 2.0, 3.0, 1.0  # L = 6 frames, H = 2 frames
    L, H = 6, 2
    d = 4
    train = [rng.standard_normal((n, d)) for n in (20, 3, 6, 11, 40)]  # 3 and 6: one window
    query = [rng.standard_normal((m, d)) for m in (9, 2, 25)]
    S = all_against_all_scores(train, query, frame_rate=rate, window_s=window_s, hop_s=hop_s, **blocks)
    assert S.shape == (5, 3)
    for t, Ft in enumerate(train):
        for q, Fq in enumerate(query):
            best = max(_cos(a, b) for a in _brute_windows(Ft, L, H) for b in _brute_windows(Fq, L, H))
            assert S[t, q] == pytest.approx(best, abs=1e-12)


def test_all_against_all_single_windows_equals_average_cosine():
    rng = np.random.default_rng(2)
    train = [rng.standard_normal((n, 3)) for n in (4, 5, 2)]
    query = [rng.standard_normal((m, 3)) for m in (3, 5)]
    S = all_against_all_scores(train, query, frame_rate=1.0, window_s=10, hop_s=1)
    ref = cosine_scores(np.stack([f.mean(0) for f in train]), np.stack([f.mean(0) for f in query]))
    np.testing.assert_allclose(S, ref, atol=1e-12)
    # identical tracks score 1 with themselves
    S2 = all_against_all_scores(train, train, frame_rate=1.0, window_s=2, hop_s=1)
    np.testing.assert_allclose(np.diag(S2), 1.0, atol=1e-12)


# --------------------------------------------------------------------------- basic-pitch


@pytest.fixture(scope="module")
def bp():
    return BasicPitchEncoder(n_threads=2)


def _peak_midi(bp, f0, sr=22050):
    """MIDI number of the strongest of the 88 note bins in the embedding of a 3 s tone at f0."""
    return bp.midi_offset + int(np.argmax(bp.embed(_tone(f0, sr=sr, dur=3.0), sr)[:88]))


def test_basic_pitch_a4_peaks_at_midi_69(bp):
    sr = 22050
    y = _tone(440.0, sr=sr, dur=3.0)
    F = bp.frames(y, sr)
    assert F.shape == (int(np.floor(len(y) * 86 / 22050)), 176)
    assert F.dtype == np.float32 and np.all((F >= 0) & (F <= 1))
    assert _peak_midi(bp, 440.0) == 69
    assert _peak_midi(bp, 440.0, sr=44100) == 69  # a resampled input (44.1 kHz) gives the same pitch
    assert _peak_midi(bp, 523.25) == 72  # C5 (523.25 Hz) peaks three semitones up


def test_basic_pitch_pitch_matters_more_than_loudness(bp):
    sr = 22050
    loud = bp.embed(_tone(440.0, sr=sr, dur=3.0, amp=0.4), sr)
    quiet = bp.embed(_tone(440.0, sr=sr, dur=3.0, amp=0.05), sr)
    other = bp.embed(_tone(311.13, sr=sr, dur=3.0, amp=0.4), sr)  # D#4, a tritone down
    same_pitch = _cos(loud, quiet)
    assert same_pitch > 0.95
    assert _cos(loud, other) < same_pitch - 0.1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread, imported by librosa.load
def test_basic_pitch_matches_package_run_inference(bp, tmp_path):
    """Our array path equals basic_pitch.inference.run_inference on a file.

    basic_pitch.inference imports mir_eval and resampy (only used for note
    creation, not installed here): stub them for the import.
    """
    sf = pytest.importorskip("soundfile")
    sr = 22050
    rng = np.random.default_rng(3)
    y = (_tone(261.63, sr=sr, dur=4.3) + 0.01 * rng.standard_normal(int(round(4.3 * sr)))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, y, sr, subtype="FLOAT")
    added = []
    for stub in ("mir_eval", "resampy"):
        if importlib.util.find_spec(stub) is None and stub not in sys.modules:
            sys.modules[stub] = types.ModuleType(stub)
            added.append(stub)
    had = {m for m in ("basic_pitch.inference", "basic_pitch.note_creation") if m in sys.modules}
    try:
        from basic_pitch.inference import Model, run_inference

        ref = run_inference(path, Model(bp.model_path))
    finally:
        for m in ("basic_pitch.inference", "basic_pitch.note_creation"):
            if m not in had:
                sys.modules.pop(m, None)
        for stub in added:
            sys.modules.pop(stub, None)
    ours = bp.posteriorgrams(y, sr)
    for k in ("note", "onset", "contour"):
        assert ours[k].shape == ref[k].shape
        np.testing.assert_allclose(ours[k], ref[k], atol=1e-5)


# --------------------------------------------------------------------------- aisfx


@pytest.fixture(scope="module")
def ax():
    return AisfxEncoder(n_threads=2)


def test_aisfx_shape_and_determinism(ax):
    sr = 22050
    y = _tone(220.0, sr=sr, dur=6.0)
    F1 = ax.frames(y, sr)
    F2 = ax.frames(y.copy(), sr)
    # 6 s at 44.1 kHz -> 1 + 264600 // 1024 = 259 spectrogram frames;
    # complete 100-frame blocks every 43 frames: 1 + (259 - 100) // 43 = 4
    assert F1.shape == (4, 512) and F1.dtype == np.float32
    np.testing.assert_array_equal(F1, F2)
    assert ax.frame_rate == pytest.approx(44100 / 1024 / 43)
    # shorter than one block (2.32 s): one zero-padded block
    assert ax.frames(_tone(220.0, sr=sr, dur=1.0), sr).shape == (1, 512)
    assert ax.embed(y, sr).shape == (512,)


def test_aisfx_tone_vs_noise(ax):
    sr = 22050
    rng = np.random.default_rng(4)
    tone = ax.embed(_tone(330.0, sr=sr, dur=4.0, amp=0.4), sr)
    tone_quiet = ax.embed(_tone(330.0, sr=sr, dur=4.0, amp=0.1), sr)
    noise = ax.embed((0.1 * rng.standard_normal(4 * sr)).astype(np.float32), sr)
    assert _cos(tone, tone) == pytest.approx(1.0)  # x / sqrt(x)^2 of one float32 dot x: <= 3 ulps of 1 < 1e-6
    assert _cos(tone, tone_quiet) > 0.99  # peak-normalized input: loudness-invariant
    assert _cos(tone, noise) < _cos(tone, tone_quiet) - 0.1


# --------------------------------------------------------------------------- HF encoders


@pytest.mark.parametrize("kind", ["clap", "mert"])
def test_hf_encoder_missing_gives_clear_message(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_id = HFEncoder.DEFAULT_MODELS[kind]
    with pytest.raises(RuntimeError) as err:
        HFEncoder(kind, cache_dir=tmp_path)  # empty cache: weights cannot be there
    msg = str(err.value)
    assert model_id in msg
    if importlib.util.find_spec("transformers") is None:
        assert "`transformers`" in msg and "not installed" in msg
    else:
        assert "missing" in msg and str(tmp_path) in msg
    with pytest.raises(RuntimeError, match=model_id):
        get_encoder(kind, cache_dir=tmp_path)


def test_hf_encoder_mert_path_with_tiny_random_model(tmp_path, monkeypatch):
    """The MERT code path on a tiny random HuBERT (MERT's architecture family)."""
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = transformers.HubertConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    transformers.HubertModel(cfg).save_pretrained(tmp_path)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=24000).save_pretrained(tmp_path)
    enc = HFEncoder("mert", model_path=tmp_path, clip_s=1.0)
    assert enc.sample_rate == 24000 and enc.frame_rate == pytest.approx(1200.0) and enc.dim == 16
    F = enc.frames(_tone(440.0, sr=24000, dur=1.5), 24000)
    assert F.ndim == 2 and F.shape[1] == 16
    assert abs(F.shape[0] - 1.5 * 1200) <= 10
    np.testing.assert_array_equal(F, enc.frames(_tone(440.0, sr=24000, dur=1.5), 24000))


def test_get_encoder_names():
    with pytest.raises(ValueError, match="unknown encoder"):
        get_encoder("nope")


def test_get_encoder_caps_the_encoders_own_threads():
    """A job's --threads reaches the encoders that keep their own pool (onnxruntime would
    otherwise take every core) and is ignored by those without one."""
    from aria.audio.encoders import get_encoder

    bp1 = get_encoder("basic_pitch", n_threads=1)
    assert bp1._sess.get_session_options().intra_op_num_threads == 1
    assert get_encoder("basic_pitch")._sess.get_session_options().intra_op_num_threads == 0  # ort default: all
    assert get_encoder("aisfx", n_threads=1).n_threads == 1
    y = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    np.testing.assert_allclose(bp1.frames(y, 22050), get_encoder("basic_pitch").frames(y, 22050), atol=1e-5)
