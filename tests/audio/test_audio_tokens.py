"""Audio tokenizers: stage windows, semantic k-means, mel RVQ, pretrained adapters.

All signals are synthetic (harmonic note sequences, noise, clicks) at 22050 Hz.
Error measure: relative log-mel error against the signal's own spread,
``rel(L, Lh) = ||L - Lh||_F / ||L - mean_t L||_F`` (per-band time mean removed
from the denominator, so a constant offset cannot make the error look small).
Bounds, with the values measured when they were set:

* RVQ on its training corpus (12 tracks × 8 s, defaults: 8 × 256 codes):
  rel falls strictly with every added quantizer (measured 1.0, 0.20, 0.12,
  0.091, 0.071, 0.057, 0.045, 0.035, 0.027 for 0..8 quantizers);
  with all 8: rel < 0.06. (Plain ||L - Lh|| / ||L||: 0.014 with 8.)
* decode(encode(y)) (RVQ + Richardson-Lucy mel inversion + 32 Griffin-Lim
  iterations), log-mel of the audio vs the original's: rel < 0.35 (measured
  0.25-0.29 on training tracks; 0.31 on a held-out one).
"""

import sys

import numpy as np
import pytest

import aria.audio.tokenizers as at
from aria.audio.tokenizers import (
    EncodecAcoustic,
    MelRVQ,
    MertSemantic,
    SemanticKMeans,
    frame_features,
    stage_windows,
    tokenizer_from_state_dict,
    window_audio,
)

SR = 22050


def rel(L, Lh):
    return float(np.linalg.norm(L - Lh) / np.linalg.norm(L - L.mean(axis=0)))


def synth(seed, dur=8.0):
    """Harmonic notes (1-5 partials, decaying), optional noise floor, clicks."""
    rng = np.random.default_rng(seed)
    n = int(dur * SR)
    t = np.arange(n) / SR
    y = np.zeros(n)
    note = rng.uniform(0.2, 0.6)
    nh = int(rng.integers(1, 6))
    for s in np.arange(0, dur, note):
        f0 = 110 * 2 ** (rng.integers(0, 30) / 12)
        a, b = int(s * SR), min(n, int((s + note) * SR))
        tt = t[a:b] - s
        env = np.exp(-tt * rng.uniform(1, 6))
        for h in range(1, nh + 1):
            y[a:b] += env * np.sin(2 * np.pi * f0 * h * tt) / h
    if rng.random() < 0.5:
        y += rng.uniform(0.0, 0.1) * rng.standard_normal(n)
    for s in np.arange(0, dur, rng.uniform(0.3, 0.8)):
        a = int(s * SR)
        k = min(200, n - a)
        y[a : a + k] += rng.uniform(0.3, 1.0) * rng.standard_normal(k) * np.exp(-np.arange(k) / 40)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def sine(f=220.0, dur=8.0):
    return (0.5 * np.sin(2 * np.pi * f * np.arange(int(dur * SR)) / SR)).astype(np.float32)


def noise(seed=123, dur=8.0):
    return (0.2 * np.random.default_rng(seed).standard_normal(int(dur * SR))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus():
    return [synth(s) for s in range(12)]


@pytest.fixture(scope="module")
def rvq(corpus):
    return MelRVQ().fit(corpus, random_state=0)


@pytest.fixture(scope="module")
def sem_corpus(corpus):
    return corpus + [sine(), noise()]


@pytest.fixture(scope="module")
def sem(sem_corpus):
    return SemanticKMeans().fit(sem_corpus, random_state=0)


# ---------------------------------------------------------------- windows


def test_stage_windows_25s_at_10s():
    w = stage_windows(25 * SR, sr=SR, window_s=10.0)
    assert w.window == 10 * SR
    assert w.starts.tolist() == [0, 10 * SR, 20 * SR]
    assert w.lengths.tolist() == [10 * SR, 10 * SR, 5 * SR]  # 5 s tail = half a window: kept
    assert w.padded.tolist() == [False, False, True]
    m = w.frame_mask(hop_length=SR // 10)  # 10 Hz semantic frames
    assert m.shape == (3, 100)
    assert m.sum(axis=1).tolist() == [100, 100, 50]
    assert m[2, :50].all() and not m[2, 50:].any()
    # a tail below min_tail is dropped; min_tail=1 drops every partial tail
    assert len(stage_windows(int(24.9 * SR), sr=SR, window_s=10.0).starts) == 2
    assert stage_windows(25 * SR, sr=SR, window_s=10.0, min_tail=1.0).lengths.tolist() == [10 * SR] * 2


def test_stage_windows_short_track_one_padded_window():
    for min_tail in (0.0, 0.5, 1.0):  # a short track always gives exactly one window
        w = stage_windows(3 * SR, sr=SR, window_s=10.0, min_tail=min_tail)
        assert w.starts.tolist() == [0] and w.lengths.tolist() == [3 * SR]
        assert w.padded.tolist() == [True]
    m = w.frame_mask(hop_length=SR // 10)
    assert m.shape == (1, 100) and m.sum() == 30
    y = np.ones(3 * SR, dtype=np.float32)
    seg = window_audio(y, w)
    assert seg.shape == (1, 10 * SR)
    assert np.all(seg[0, : 3 * SR] == 1) and np.all(seg[0, 3 * SR :] == 0)
    assert len(stage_windows(0, sr=SR, window_s=10.0).starts) == 0


def test_stage_windows_30s_tracks():
    # 30 s tracks: 3 semantic, 8 coarse (7 + a 2 s = half-window tail), 15 fine windows
    counts = [len(stage_windows(30 * SR, sr=SR, window_s=s).starts) for s in (10.0, 4.0, 2.0)]
    assert counts == [3, 8, 15]
    w = stage_windows(30 * SR, sr=SR, window_s=4.0)
    assert np.all(np.diff(w.starts) == w.window)  # non-overlapping, contiguous
    assert w.lengths.sum() == 30 * SR


# ---------------------------------------------------------------- features


def test_frame_features_shape_and_rate():
    y = synth(5, dur=4.5)
    X = frame_features(y, sr=SR)
    assert X.shape == (45, 64 + 12)  # 10 Hz, ceil(n / 2205)
    assert np.all(np.isfinite(X))
    assert X.shape[0] == at.n_frames(len(y), 2205)
    chroma = frame_features(sine(220.0, 2.0), sr=SR)[:, 64:]
    assert np.all(np.argmax(chroma[2:-2], axis=1) == 9)  # 220 Hz = A


# ---------------------------------------------------------------- MelRVQ


def test_rvq_error_decreases_with_quantizers(rvq, corpus):
    L = np.concatenate([rvq.log_mel(y) for y in corpus])
    C = np.concatenate([rvq.encode(y) for y in corpus])
    errs = [rel(L, rvq.decode_mel(C, n_quantizers=q)) for q in range(rvq.n_quantizers + 1)]
    assert errs[0] == pytest.approx(1.0)
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.06, errs


def test_rvq_codes_shape_range_deterministic(rvq, corpus):
    y = corpus[3]
    c = rvq.encode(y)
    assert c.dtype == np.int64
    assert c.shape == (-(-len(y) // 882), 8) and rvq.frame_rate == 25.0
    assert c.min() >= 0 and c.max() < rvq.n_codes
    np.testing.assert_array_equal(c, rvq.encode(y.copy()))
    coarse, fine = rvq.split(c)
    assert coarse.shape[1] == 3 and fine.shape[1] == 5
    assert rvq.decode_mel(coarse).shape == (len(c), rvq.n_mels)  # coarse-only decodes
    # the stage windows' token counts: 4 s coarse = 100 frames x 3, 2 s fine = 50 x 5
    assert rvq.n_frames(4 * SR) * rvq.n_coarse == 300
    assert rvq.n_frames(2 * SR) * rvq.n_fine == 250


def test_rvq_fit_is_seeded(rvq, corpus):
    again = MelRVQ().fit(corpus, random_state=0)
    np.testing.assert_array_equal(again.codebooks, rvq.codebooks)
    other = MelRVQ().fit(corpus, random_state=1)
    assert not np.array_equal(other.codebooks, rvq.codebooks)


def test_rvq_decode_round_trip(rvq, corpus):
    y = corpus[0]
    c = rvq.encode(y)
    yh = rvq.decode(c)
    assert yh.dtype == np.float32 and np.all(np.isfinite(yh))
    assert len(yh) == len(c) * rvq.hop_length
    assert abs(len(yh) - len(y)) <= rvq.hop_length
    err = rel(rvq.log_mel(y), rvq.log_mel(yh[: len(y)]))
    assert err < 0.35, err
    np.testing.assert_array_equal(yh, rvq.decode(c))  # seeded Griffin-Lim init


def _assert_state_dict_round_trip(tok, cls, corpus, path):
    """Saved as .npz and read back by tokenizer_from_state_dict: a ``cls`` that gives the same tokens."""
    np.savez(path, **tok.state_dict())
    with np.load(path, allow_pickle=False) as f:
        back = tokenizer_from_state_dict(f)
    assert isinstance(back, cls)
    for y in corpus[:3]:
        np.testing.assert_array_equal(back.encode(y), tok.encode(y))


def test_rvq_state_dict_round_trip(rvq, corpus, tmp_path):
    _assert_state_dict_round_trip(rvq, MelRVQ, corpus, tmp_path / "rvq.npz")


def test_rvq_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        MelRVQ().encode(sine())
    with pytest.raises(ValueError, match="at least k=256"):
        MelRVQ().fit([sine(dur=1.0)], random_state=0)
    with pytest.raises(ValueError, match="mono"):
        frame_features(np.zeros((2, 100)), sr=SR)


# ---------------------------------------------------------------- semantic


def test_semantic_tokens(sem, sem_corpus):
    tok = sem.encode(sem_corpus[0])
    assert tok.dtype == np.int64 and tok.shape == (80,) and sem.frame_rate == 10.0
    assert tok.min() >= 0 and tok.max() < sem.n_codes == 128
    np.testing.assert_array_equal(tok, sem.encode(sem_corpus[0]))
    a, b = set(sem.encode(sine()).tolist()), set(sem.encode(noise()).tolist())
    assert a and b and not (a & b), (a, b)
    with pytest.raises(NotImplementedError):
        sem.decode(tok)


def test_semantic_seeded(sem, sem_corpus):
    again = SemanticKMeans().fit(sem_corpus, random_state=0)
    np.testing.assert_array_equal(again.codebook, sem.codebook)
    other = SemanticKMeans().fit(sem_corpus, random_state=7)
    assert not np.array_equal(other.codebook, sem.codebook)


def test_semantic_state_dict_round_trip(sem, sem_corpus, tmp_path):
    _assert_state_dict_round_trip(sem, SemanticKMeans, sem_corpus, tmp_path / "sem.npz")
    with pytest.raises(ValueError, match="mel_rvq"):
        SemanticKMeans.from_state_dict({"kind": np.array("mel_rvq")})


# ---------------------------------------------------------------- adapters


@pytest.mark.parametrize(
    "cls, model_id",
    [
        (MertSemantic, "m-a-p/MERT-v1-95M"),
        (EncodecAcoustic, "facebook/encodec_24khz"),
    ],
)
def test_adapter_without_transformers(cls, model_id, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as exc:
        cls()
    msg = str(exc.value)
    assert model_id in msg and "transformers" in msg and "huggingface-cli download" in msg


@pytest.mark.parametrize(
    "cls, model_id",
    [
        (MertSemantic, "m-a-p/MERT-v1-95M"),
        (EncodecAcoustic, "facebook/encodec_24khz"),
    ],
)
def test_adapter_without_weights(cls, model_id, monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as exc:
        cls(cache_dir=str(tmp_path))  # empty cache: nothing to load, nothing fetched
    assert model_id in str(exc.value) and "local Hugging Face cache" in str(exc.value)


class _FakeMert:
    """Stand-in for a loaded MERT: 75 Hz frames at 24 kHz, 3 'layers' of spectra."""

    def __call__(self, input_values, output_hidden_states=True, **kw):
        import torch

        x = input_values[0]
        n = 1 + (len(x) - 400) // 320  # MERT's conv front end: 400-sample field, 320 hop
        frames = torch.stack([x[i * 320 : i * 320 + 400] for i in range(n)])
        spec = torch.log1p(torch.fft.rfft(frames).abs()[:, :32])
        return type("Out", (), {"hidden_states": [spec[None], 2 * spec[None], -spec[None]]})()


def _fake_processor(y, sampling_rate, return_tensors):
    import torch

    assert sampling_rate == 24000
    return {"input_values": torch.from_numpy(np.asarray(y, dtype=np.float32))[None]}


def test_mert_adapter_plumbing(sem_corpus, tmp_path):
    pytest.importorskip("torch")
    tok = MertSemantic(model=_FakeMert(), processor=_fake_processor, layer=1, n_codes=16)
    assert tok.frame_rate == 75.0 and tok.hop_length == 294
    tok.fit(sem_corpus[-2:], random_state=0)  # sine + noise
    y = sem_corpus[-2][:SR]
    codes = tok.encode(y)
    assert codes.shape == (75,) and codes.min() >= 0 and codes.max() < 16
    back = tokenizer_from_state_dict(tok.state_dict(), model=_FakeMert(), processor=_fake_processor)
    np.testing.assert_array_equal(back.encode(y), codes)


def test_encodec_adapter_plumbing_random_weights():
    """The EnCodec code path on a randomly initialized 24 kHz model (no weights needed)."""
    tf = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    tok = EncodecAcoustic(model=tf.EncodecModel(tf.EncodecConfig()).eval())
    assert tok.n_quantizers == 8 and tok.frame_rate == 75.0 and tok.n_fine == 5
    y = synth(1, dur=1.0)
    codes = tok.encode(y)
    assert codes.shape == (75, 8) and codes.min() >= 0 and codes.max() < 1024
    yh = tok.decode(codes)
    assert yh.shape == (75 * 294,) and np.all(np.isfinite(yh))
    assert tok.decode(tok.split(codes)[0]).shape == (75 * 294,)  # coarse only
