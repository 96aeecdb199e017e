"""Audio features (docs/spec.md §5) and audio loading, against independent references.

All audio is synthesized here and written with soundfile into tmp_path.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

librosa = pytest.importorskip("librosa")

import aria.audio.features as A  # noqa: E402
from aria.io.audio import is_silent, load_audio, silence_fraction  # noqa: E402

SR = 22050


# --------------------------------------------------------------------------- synthesis
def click_track(period_s: float, dur_s: float, sr: int = SR) -> np.ndarray:
    """Decaying 1 kHz + noise bursts (15 ms) every ``period_s`` seconds."""
    rng = np.random.default_rng(1)
    y = np.zeros(int(dur_s * sr), dtype=np.float64)
    n = int(0.015 * sr)
    t = np.arange(n) / sr
    burst = (np.sin(2 * np.pi * 1000 * t) + 0.3 * rng.standard_normal(n)) * np.exp(-t / 0.004)
    k = 0
    while True:
        i = int(round(k * period_s * sr))
        if i + n > y.size:
            break
        y[i : i + n] += burst
        k += 1
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def triad(midi, dur_s: float, sr: int = SR) -> np.ndarray:
    """Additive sawtooth-like tones (8 harmonics, 1/k amplitudes) with 20 ms fades."""
    t = np.arange(int(dur_s * sr)) / sr
    y = np.zeros_like(t)
    for m in midi:
        f = 440.0 * 2 ** ((m - 69) / 12)
        for k in range(1, 9):
            if k * f < sr / 2:
                y += np.sin(2 * np.pi * k * f * t) / k
    nf = int(0.02 * sr)
    y[:nf] *= np.linspace(0, 1, nf)
    y[-nf:] *= np.linspace(1, 0, nf)
    return y


def progression(dur_s: float = 2.0) -> np.ndarray:
    """C - G - Am - F (roots C3, G2, A2, F2), ``dur_s`` per chord."""
    chords = [[48, 52, 55], [43, 47, 50], [45, 48, 52], [41, 45, 48]]
    y = np.concatenate([triad(c, dur_s) for c in chords])
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def procs():
    return A.build_processors()


@pytest.fixture(scope="module")
def chord_feats(procs):
    y = progression()
    return y, A.extract(y, sr=SR, processors=procs)


# --------------------------------------------------------------------------- shims
def test_compat_idempotent():
    from aria.audio import _compat

    m1 = _compat.ensure_madmom()
    m2 = _compat.ensure_madmom()
    assert m1 is m2 and m1.__name__ == "madmom"
    assert _compat.import_beatnet() is _compat.import_beatnet()
    import importlib.metadata as md

    # the distribution wrapper is not left installed globally
    assert md.distribution.__module__ == "importlib.metadata"
    pa = sys.modules["pyaudio"]
    if getattr(pa, _compat.PYAUDIO_STUB_ATTR, False):
        with pytest.raises(RuntimeError, match="pyaudio"):
            pa.PyAudio()


# --------------------------------------------------------------------------- (a) librosa features
def test_api_shapes_and_channels(chord_feats):
    _, f = chord_feats
    assert tuple(f) == A.FEATURE_NAMES
    assert set(A.FEATURE_NAMES) == {k for ch in A.CHANNELS.values() for k in ch}
    assert A.CHANNELS == {
        "rhythmic": ["beat_interval_hist", "onset_interval_hist"],
        "harmonic": ["chroma", "tonnetz", "chords"],
        "timbral": ["mfcc", "cqt"],
    }
    for k, d in A.FEATURE_DIMS.items():
        assert f[k].shape == (d,) and f[k].dtype == np.float64, k
    assert f["chords"].dtype == np.int64 and f["chords"].ndim == 1
    # pinned: 16-bin interval histograms, 12 pitch classes, 6 tonnetz dimensions, mean and std of 13 MFCCs
    # and of 84 CQT bins (the direct librosa calls below)
    hist = dict(beat_interval_hist=16, onset_interval_hist=16)
    assert A.FEATURE_DIMS == {**hist, "chroma": 12, "tonnetz": 6, "mfcc": 2 * 13, "cqt": 2 * 84}


def test_librosa_features_match_direct_calls(chord_feats):
    y, f = chord_feats
    chroma = librosa.feature.chroma_cqt(y=y, sr=SR)
    np.testing.assert_allclose(f["chroma"], chroma.mean(axis=1), rtol=1e-6, atol=1e-7)
    tonnetz = librosa.feature.tonnetz(y=y, sr=SR, chroma=chroma)
    np.testing.assert_allclose(f["tonnetz"], tonnetz.mean(axis=1), rtol=1e-6, atol=1e-7)
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13)
    np.testing.assert_allclose(f["mfcc"][:13], mfcc.mean(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f["mfcc"][13:], mfcc.std(axis=1), rtol=1e-5, atol=1e-5)
    cdb = librosa.amplitude_to_db(np.abs(librosa.cqt(y=y, sr=SR, n_bins=84)), ref=np.max)
    np.testing.assert_allclose(f["cqt"][:84], cdb.mean(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(f["cqt"][84:], cdb.std(axis=1), rtol=1e-5, atol=1e-4)
    assert f["cqt"][:84].max() <= 0.0 and f["cqt"][:84].min() >= -80.0
    # the tonal content is right: C, G, A, F, E, B, D are the chord tones
    assert set(np.argsort(f["chroma"])[-4:]) <= {0, 2, 4, 5, 7, 9, 11}


# --------------------------------------------------------------------------- (b) rhythm
def _bin_of(x, lo, hi, n=16):
    return int(np.clip(np.floor((x - lo) / ((hi - lo) / n)), 0, n - 1))


@pytest.mark.parametrize("bpm,period", [(120, 0.5), (100, 0.6)])
def test_click_track_rhythm(procs, bpm, period):
    y = click_track(period, 15.0)
    f = A.extract(y, sr=SR, processors=procs)
    beat = f["beat_interval_hist"]
    assert beat.sum() == pytest.approx(1.0)
    b = _bin_of(period, 0.2, 2.0)
    assert int(np.argmax(beat)) == b
    assert beat[b] >= 0.8
    onset = f["onset_interval_hist"]
    assert onset.sum() == pytest.approx(1.0)
    # onset times are quantized to hop/sr = 23 ms: accept the bins within one hop of the period
    hop_s = 512 / SR
    ok = sorted({_bin_of(period - hop_s, 0, 1), _bin_of(period, 0, 1), _bin_of(period + hop_s, 0, 1)})
    assert int(np.argmax(onset)) in ok
    assert onset[ok].sum() >= 0.9
    assert _bin_of(period, 0, 1) == (8 if bpm == 120 else 9)


def test_beatnet_state_does_not_leak(procs):
    a = click_track(0.5, 8.0)
    b = click_track(0.37, 8.0)
    t1 = A.beat_times(a, sr=SR, processors=procs)
    A.beat_times(b, sr=SR, processors=procs)
    t2 = A.beat_times(a, sr=SR, processors=procs)
    np.testing.assert_array_equal(t1, t2)


def test_beat_times_at_other_rate(procs):
    y = click_track(0.5, 10.0, sr=16000)
    t = A.beat_times(y, sr=16000, processors=procs)
    assert np.median(np.diff(t)) == pytest.approx(0.5, abs=0.03)


# --------------------------------------------------------------------------- (c) chords
def test_chord_progression_roots(chord_feats):
    _, f = chord_feats
    roots = f["chords"]
    assert A.chord_root_motion(roots).tolist() == [7, 2, 8]  # C->G, G->A, A->F
    assert roots[roots >= 0].tolist() == [0, 7, 9, 5]


def test_chord_progression_looped(procs):
    y = np.concatenate([progression(1.5)] * 2)
    roots = A.chord_roots(y, sr=SR, processors=procs)
    assert A.chord_root_motion(roots).tolist() == [7, 2, 8, 7, 7, 2, 8]  # F->C is 7 too


def test_parse_chord_root():
    assert [
        A.parse_chord_root(s) for s in ["C:maj", "A:min", "N", "X", "F#:maj", "Bb:min7", "G", "Cb:maj", "A#:min", "E/5"]
    ] == [0, 9, -1, -1, 6, 10, 7, 11, 10, 4]
    with pytest.raises(ValueError):
        A.parse_chord_root("H:maj")


# --------------------------------------------------------------------------- (d) histogram rules
def test_interval_histogram_rules():
    h = A.interval_histogram
    # edges k/16 on [0, 1] are exact binary fractions
    t = np.array([0.0, 0.0625, 0.125, 0.1874, 1.1874, 6.1874])  # d = 1/16, 1/16, 0.0624, 1.0, 5.0
    out = h(t, lo=0.0, hi=1.0)
    ref = np.zeros(16)
    ref[1] += 2  # d = 0.0625 sits on the left edge of bin 1
    ref[0] += 1  # 0.0624 < 0.0625
    ref[15] += 2  # d = hi and d > hi clip into the last bin
    np.testing.assert_allclose(out, ref / 5)
    # below lo clips into bin 0; order of the events does not matter
    out = h([3.0, 0.0, 0.05, 1.0], lo=0.2, hi=2.0)  # d = 0.05, 0.95, 2.0
    ref = np.zeros(16)
    ref[0] = 1
    ref[int((0.95 - 0.2) // 0.1125)] = 1  # bin 6
    ref[15] = 1
    np.testing.assert_allclose(out, ref / 3)
    assert out.dtype == np.float64 and out.sum() == pytest.approx(1.0)
    # fewer than 2 events: zeros
    np.testing.assert_array_equal(h([], lo=0, hi=1), np.zeros(16))
    np.testing.assert_array_equal(h([0.3], lo=0, hi=1, n_bins=4), np.zeros(4))
    with pytest.raises(ValueError):
        h([0, 1], lo=1.0, hi=1.0)


# --------------------------------------------------------------------------- (e) loading
def _sine(f, dur, sr, amp=0.3):
    return (amp * np.sin(2 * np.pi * f * np.arange(int(dur * sr)) / sr)).astype(np.float32)


def test_load_audio_resamples(tmp_path):
    p = tmp_path / "hi_rate.wav"
    sf.write(p, _sine(1000.0, 1.0, 44100), 44100, subtype="PCM_16")
    y = load_audio(p, sr=22050)
    assert y.dtype == np.float32 and y.shape == (22050,)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / 22050)
    assert freqs[np.argmax(spec)] == pytest.approx(1000.0, abs=2.0)
    assert np.max(np.abs(y[1000:-1000])) == pytest.approx(0.3, abs=0.01)
    # native rate kept with sr=None; stereo down-mixed by averaging
    st = np.stack([_sine(440, 0.5, 8000), np.zeros(4000, np.float32)], axis=1)
    sf.write(tmp_path / "st.wav", st, 8000, subtype="FLOAT")
    m = load_audio(tmp_path / "st.wav", sr=None)
    np.testing.assert_allclose(m, st.mean(axis=1), atol=1e-7)
    assert load_audio(tmp_path / "st.wav", sr=None, mono=False).shape == (2, 4000)


def test_load_audio_errors_name_the_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _sine(440, 1.0, SR), SR, subtype="PCM_16")
    data = good.read_bytes()

    trunc = tmp_path / "truncated.wav"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated") as e:
        load_audio(trunc)
    assert str(trunc) in str(e.value)

    cut_header = tmp_path / "cut_header.wav"
    cut_header.write_bytes(data[:30])
    with pytest.raises(ValueError, match="corrupt") as e:
        load_audio(cut_header)
    assert str(cut_header) in str(e.value)

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="zero-length") as e:
        load_audio(empty)
    assert str(empty) in str(e.value)

    no_samples = tmp_path / "no_samples.wav"
    sf.write(no_samples, np.zeros(0, np.float32), SR)
    with pytest.raises(ValueError, match="zero samples") as e:
        load_audio(no_samples)
    assert str(no_samples) in str(e.value)

    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 100)
    with pytest.raises(ValueError, match="garbage.wav"):
        load_audio(garbage)

    nan = tmp_path / "nan.wav"
    x = _sine(440, 0.2, SR)
    x[10] = np.nan
    sf.write(nan, x, SR, subtype="FLOAT")
    with pytest.raises(ValueError, match="non-finite") as e:
        load_audio(nan)
    assert str(nan) in str(e.value)

    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")


def test_silence(tmp_path):
    p = tmp_path / "silent.wav"
    sf.write(p, np.zeros(SR, np.float32), SR, subtype="PCM_16")
    y = load_audio(p)
    assert is_silent(y, sr=SR) and silence_fraction(y, sr=SR) == 1.0
    # -66 dBFS RMS noise floor is silent, -54 dBFS is not
    rng = np.random.default_rng(0)
    n = rng.standard_normal(SR)
    n /= np.sqrt(np.mean(n**2))
    assert is_silent(n * 10 ** (-66 / 20), sr=SR)
    assert not is_silent(n * 10 ** (-54 / 20), sr=SR)
    # at 20 kHz a 50 ms frame is exactly 1000 samples: 10 loud frames, then 10 zero frames
    half = np.concatenate([_sine(440, 0.5, 20000), np.zeros(10000, np.float32)])
    assert silence_fraction(half, sr=20000) == pytest.approx(0.5)
    # a partial last frame counts as a frame: 10 loud + 1 frame of 10 zero samples
    assert silence_fraction(half[:10010], sr=20000) == pytest.approx(1 / 11)
    # full-scale sine is -3 dBFS: silent only under a threshold above that
    assert is_silent(_sine(440, 0.5, 20000, amp=1.0), sr=20000, threshold_db=-2.0)
    assert not is_silent(_sine(440, 0.5, 20000, amp=1.0), sr=20000, threshold_db=-4.0)
    assert silence_fraction(np.zeros(0), sr=SR) == 1.0


def test_extract_many_skips_bad_files(tmp_path, procs):
    good = tmp_path / "good.wav"
    sf.write(good, progression(1.0), SR, subtype="PCM_16")
    good44 = tmp_path / "good44.flac"
    sf.write(good44, librosa.resample(click_track(0.5, 4.0), orig_sr=SR, target_sr=44100), 44100)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * SR, np.float32), SR)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.wav"
    trunc.write_bytes(good.read_bytes()[:4000])
    short = tmp_path / "short.wav"
    sf.write(short, _sine(440, 0.3, SR), SR)
    missing = tmp_path / "missing.wav"
    paths = [good, silent, empty, good44, trunc, short, missing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats, failures = A.extract_many(paths, sr=SR, progress=False, processors=procs)
    assert feats["paths"] == [str(good), str(good44)]
    for k, d in A.FEATURE_DIMS.items():
        assert feats[k].shape == (2, d)
    assert len(feats["chords"]) == 2
    np.testing.assert_allclose(feats["chroma"][0], A.extract(good, processors=procs)["chroma"])
    reasons = dict(failures)
    assert [p for p, _ in failures] == [str(silent), str(empty), str(trunc), str(short), str(missing)]
    assert "silent" in reasons[str(silent)]
    assert "zero-length" in reasons[str(empty)]
    assert "truncated" in reasons[str(trunc)]
    assert "too short" in reasons[str(short)]
    assert "FileNotFoundError" in reasons[str(missing)]
    for p, why in failures:
        assert p in why

    empty_out, none_ok = A.extract_many([], progress=False)
    assert none_ok == [] and empty_out["cqt"].shape == (0, 168) and empty_out["chords"] == []
