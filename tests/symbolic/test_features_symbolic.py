"""Symbolic features (docs/spec.md §5), note-list conventions and MIDI I/O.

Expected values are hand-computed from the SPEC definitions; the 50 Hz grid
features are additionally checked against a brute-force frame loop, and
read_midi against pretty_midi's independent parser.
"""

from __future__ import annotations

import numpy as np
import pytest

mido = pytest.importorskip("mido")

from aria.io.midi import read_midi, write_midi  # noqa: E402
from aria.symbolic import features as symbolic  # noqa: E402
from aria.symbolic.features import (  # noqa: E402
    CHANNELS,
    FEATURE_DIMS,
    extract,
    extract_many,
)
from aria.symbolic.notes import (  # noqa: E402
    DEFAULT_TEMPO_MAP,
    NOTE_DTYPE,
    beats_to_seconds,
    make_notes,
    seconds_to_beats,
)


def onehot(n, *pairs):
    v = np.zeros(n)
    for i, x in pairs:
        v[i] = x
    return v


# ----------------------------------------------------------------------------
# note-list conventions
# ----------------------------------------------------------------------------


def test_make_notes_sorts_and_types():
    n = make_notes([1.0, 0.0, 0.0], [2.0, 1.0, 0.5], [60, 67, 64], 90, track=[0, 1, 2])
    assert n.dtype == NOTE_DTYPE
    assert n["onset"].tolist() == [0.0, 0.0, 1.0]
    assert n["pitch"].tolist() == [64, 67, 60]
    assert n["track"].tolist() == [2, 1, 0]
    assert n["velocity"].tolist() == [90, 90, 90]


@pytest.mark.parametrize(
    "args",
    [
        ([0.0], [-1.0], [60], [90]),  # offset < onset
        ([0.0], [1.0], [128], [90]),  # pitch out of range
        ([0.0], [1.0], [60], [200]),  # velocity out of range
        ([0.0, 1.0], [1.0], [60, 61, 62], [90]),  # shape mismatch
        ([np.nan], [1.0], [60], [90]),
    ],
)
def test_make_notes_rejects_bad_input(args):
    with pytest.raises(ValueError):
        make_notes(*args)


def test_seconds_to_beats_piecewise():
    assert np.allclose(seconds_to_beats([0.0, 0.5, 3.0]), [0.0, 1.0, 6.0])
    # 120 BPM until 1 s, then 240 BPM until 2 s, then 60 BPM.
    tm = [[0.0, 0.5], [1.0, 0.25], [2.0, 1.0]]
    t = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    b = seconds_to_beats(t, tm)
    assert np.allclose(b, [0.0, 1.0, 2.0, 4.0, 6.0, 7.0])
    assert np.allclose(beats_to_seconds(b, tm), t)
    assert np.array_equal(DEFAULT_TEMPO_MAP, [[0.0, 0.5]])
    with pytest.raises(ValueError):
        seconds_to_beats([1.0], [[0.5, 0.5]])  # does not start at 0


# ----------------------------------------------------------------------------
# features: hand-computed cases
# ----------------------------------------------------------------------------


def test_api_shapes_and_channels():
    f = extract(make_notes([0.0], [1.0], [60], [80]))
    assert list(f) == list(FEATURE_DIMS)
    assert len(f) == 12
    for name, d in FEATURE_DIMS.items():
        assert f[name].dtype == np.float64 and f[name].shape == (d,)
    flat = [x for names in CHANNELS.values() for x in names]
    assert sorted(flat) == sorted(FEATURE_DIMS) and len(flat) == 12
    assert set(CHANNELS) == {"melody", "harmony", "rhythm", "dynamic", "texture"}
    assert CHANNELS["harmony"] == ["pitch_class_hist", "vertical_interval_hist"]


def test_c_major_scale_melody():
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    t = np.arange(8) * 0.5
    f = extract(make_notes(t, t + 0.5, pitches, 64))
    # intervals 2,2,1,2,2,2,1
    assert np.allclose(f["melodic_interval_hist"], onehot(25, (1, 2 / 7), (2, 5 / 7)))
    assert np.allclose(
        f["pitch_class_hist"],
        onehot(12, (0, 2 / 8), (2, 1 / 8), (4, 1 / 8), (5, 1 / 8), (7, 1 / 8), (9, 1 / 8), (11, 1 / 8)),
    )
    assert np.allclose(f["vertical_interval_hist"], 0.0)  # monophonic: L1 of nothing
    assert f["note_density"][0] == pytest.approx(8 / 4.0)
    assert f["mean_rhythmic_value"][0] == pytest.approx(1.0)  # 0.5 s at 120 BPM
    assert np.allclose(f["rhythmic_value_hist"], onehot(11, (4, 1.0)))
    assert f["polyphony_mean"][0] == pytest.approx(1.0)
    assert f["polyphony_std"][0] == pytest.approx(0.0)
    assert f["pitch_range"][0] == 12
    assert f["velocity_change_mean"][0] == 0 and f["velocity_std"][0] == 0
    assert f["velocity_range"][0] == 0


def test_held_triad():
    f = extract(make_notes([0, 0, 0], [1, 1, 1], [60, 64, 67], [80, 80, 80]))
    # pairs C-E = 4, E-G = 3, C-G = 7 (|p_a - p_b| mod 12, no inversion), 50 frames each
    assert np.allclose(f["vertical_interval_hist"], onehot(12, (3, 1 / 3), (4, 1 / 3), (7, 1 / 3)))
    assert f["polyphony_mean"][0] == pytest.approx(3.0)
    assert f["polyphony_std"][0] == pytest.approx(0.0)
    assert f["note_density"][0] == pytest.approx(3.0)
    assert f["pitch_range"][0] == 7
    # skyline of a single chord = one note: no melodic interval
    assert np.allclose(f["melodic_interval_hist"], 0.0)


def test_vertical_intervals_doublings_and_compound():
    # 60 in two tracks, 72 and 76 above: pairs 60-60 (0), 60-72 x2 (0),
    # 60-76 x2 (16 mod 12 = 4), 72-76 (4): 3 pairs in bin 0, 3 in bin 4
    f = extract(make_notes([0, 0, 0, 0], [1, 1, 1, 1], [60, 60, 72, 76], 80, track=[0, 1, 0, 0]))
    assert np.allclose(f["vertical_interval_hist"], onehot(12, (0, 0.5), (4, 0.5)))
    assert f["polyphony_mean"][0] == pytest.approx(4.0)


def test_two_voices_of_different_lengths():
    # A: 0-1 s, B: 0.5-2 s. Frames t_i = i/50 < 2: 100 frames.
    # frames 0-24: 1 note, 25-49: 2 notes, 50-99: 1 note.
    f = extract(make_notes([0.0, 0.5], [1.0, 2.0], [60, 67], [80, 80], track=[0, 1]))
    mean = (25 * 1 + 25 * 2 + 50 * 1) / 100
    std = np.sqrt((25 * 1 + 25 * 4 + 50 * 1) / 100 - mean**2)
    assert f["polyphony_mean"][0] == pytest.approx(mean)  # 1.25
    assert f["polyphony_std"][0] == pytest.approx(std)  # 0.4330
    assert np.allclose(f["vertical_interval_hist"], onehot(12, (7, 1.0)))
    assert f["note_density"][0] == pytest.approx(2 / 2.0)


def test_silent_frames_are_excluded():
    # 0-0.5 s and 1.0-1.5 s: the 25 silent frames between do not count
    # (including them would give mean 2/3).
    f = extract(make_notes([0.0, 1.0], [0.5, 1.5], [60, 62], [80, 80]))
    assert f["polyphony_mean"][0] == pytest.approx(1.0)
    assert f["polyphony_std"][0] == pytest.approx(0.0)
    # note density: 2 notes over (1.5 - 0) s
    assert f["note_density"][0] == pytest.approx(2 / 1.5)


def test_grid_starts_at_first_onset_and_offset_is_exclusive():
    # first onset 0.013 s: frames at 0.013 + i/50. Note B [0.033, 0.053) covers
    # exactly frame t_1 = 0.033 (onset <= t < offset); with a grid from 0 it
    # would cover frame 0.04 too and mean polyphony would change.
    notes = make_notes([0.013, 0.033], [0.113, 0.053], [60, 64], [80, 80])
    f = extract(notes)
    # frames 0.013, 0.033, 0.053, 0.073, 0.093 (< 0.113): counts 1, 2, 1, 1, 1
    assert f["polyphony_mean"][0] == pytest.approx(6 / 5)
    assert f["vertical_interval_hist"][4] == pytest.approx(1.0)


def test_velocities():
    # ordered by (onset, pitch): (0, 60, v40), (0, 64, v100), (1, 62, v90)
    # changes |100-40| = 60, |90-100| = 10 -> 35
    notes = np.zeros(3, dtype=NOTE_DTYPE)  # deliberately not in canonical order
    notes["onset"] = [0.0, 1.0, 0.0]
    notes["offset"] = [1.0, 2.0, 1.0]
    notes["pitch"] = [64, 62, 60]
    notes["velocity"] = [100, 90, 40]  # input order would give (10 + 50) / 2 = 30
    f = extract(notes)
    assert np.array_equal(notes["pitch"], [64, 62, 60])  # input not modified
    assert f["velocity_change_mean"][0] == pytest.approx(35.0)
    assert f["velocity_std"][0] == pytest.approx(np.sqrt(6200 / 9))  # population std
    assert f["velocity_range"][0] == 60


def test_rhythmic_values_at_120_bpm_with_log_snapping():
    beats = np.array([0.125, 0.5, 0.75, 2.0, 0.62, 4.95, 20.0, 0.01])
    # 0.62: linear-nearest would be 0.5, log-nearest (midpoint sqrt(0.375) = 0.612) 0.75
    # 4.95: linear-nearest 4, log-nearest (midpoint sqrt(24) = 4.899) 6
    # 20 -> 8 (clipped to the longest), 0.01 -> 0.125
    dur_s = beats * 0.5
    onset = np.arange(beats.size) * 20.0
    f = extract(make_notes(onset, onset + dur_s, 60, 80))
    assert f["mean_rhythmic_value"][0] == pytest.approx(beats.mean())
    expected = np.zeros(11)
    for idx in [0, 2, 3, 6, 3, 9, 10, 0]:  # indices into 0.125 ... 8
        expected[idx] += 1
    assert np.allclose(f["rhythmic_value_hist"], expected / 8)


def test_rhythmic_values_with_tempo_change():
    # 120 BPM until 1 s, then 240 BPM.
    tm = [[0.0, 0.5], [1.0, 0.25]]
    notes = make_notes([0.5, 1.0], [1.5, 1.25], [60, 62], 80)
    f = extract(notes, tempo_map=tm)
    # note 1: beats(0.5) = 1, beats(1.5) = 2 + 2 = 4 -> 3 beats (dotted half)
    # note 2: 0.25 s at 240 BPM = 1 beat
    assert f["mean_rhythmic_value"][0] == pytest.approx(2.0)
    assert np.allclose(f["rhythmic_value_hist"], onehot(11, (4, 0.5), (7, 0.5)))
    # at the default 120 BPM note 1 is 2 beats, note 2 half a beat
    g = extract(notes)
    assert g["mean_rhythmic_value"][0] == pytest.approx(1.25)
    assert np.allclose(g["rhythmic_value_hist"], onehot(11, (2, 0.5), (6, 0.5)))


def test_skyline_per_track_with_chords():
    # track 0: chord 60/64/67 at 0, 72 at 1, chord 59/62 at 2 -> skyline 67, 72, 62
    #          intervals 5, 10
    # track 1: 80 at 0.5, 90 at 1.5 -> interval 10
    # (a single skyline over all tracks would give 13, 8, 18, 28)
    onset = [0, 0, 0, 1, 2, 2, 0.5, 1.5]
    pitch = [60, 64, 67, 72, 59, 62, 80, 90]
    track = [0, 0, 0, 0, 0, 0, 1, 1]
    onset = np.array(onset, float)
    f = extract(make_notes(onset, onset + 0.5, pitch, 80, track=track))
    assert np.allclose(f["melodic_interval_hist"], onehot(25, (5, 1 / 3), (10, 2 / 3)))


def test_large_intervals_go_to_last_bin():
    # 30 -> 60 (30), 60 -> 84 (24), 84 -> 20 (64), 20 -> 21 (1)
    onset = np.arange(5.0)
    f = extract(make_notes(onset, onset + 1, [30, 60, 84, 20, 21], 80))
    assert np.allclose(f["melodic_interval_hist"], onehot(25, (24, 3 / 4), (1, 1 / 4)))
    assert f["pitch_range"][0] == 64


def test_empty_and_single_note():
    empty = extract(np.zeros(0, dtype=NOTE_DTYPE))
    for name, d in FEATURE_DIMS.items():
        assert np.array_equal(empty[name], np.zeros(d))
    f = extract(make_notes([1.0], [1.25], [61], [77]))
    assert f["note_density"][0] == pytest.approx(1 / 0.25)
    assert f["mean_rhythmic_value"][0] == pytest.approx(0.5)
    assert np.allclose(f["pitch_class_hist"], onehot(12, (1, 1.0)))
    assert np.allclose(f["melodic_interval_hist"], 0)
    assert np.allclose(f["vertical_interval_hist"], 0)
    assert f["polyphony_mean"][0] == 1 and f["polyphony_std"][0] == 0
    assert f["velocity_change_mean"][0] == 0 and f["velocity_std"][0] == 0


def _brute_grid(notes):
    """Frame-by-frame reference for the 50 Hz grid features."""
    t0, t_end = notes["onset"].min(), notes["offset"].max()
    hist, poly = np.zeros(12), []
    i = 0
    while (t := t0 + i / 50) < t_end:
        on = notes[(notes["onset"] <= t) & (t < notes["offset"])]
        if on.size:
            poly.append(on.size)
            p = on["pitch"].astype(int)
            for a in range(p.size):
                for b in range(a + 1, p.size):
                    hist[abs(p[a] - p[b]) % 12] += 1
        i += 1
    poly = np.array(poly, float)
    h = hist / hist.sum() if hist.sum() else hist
    return h, poly.mean(), poly.std()


def test_grid_features_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(3):
        n = 25
        onset = np.round(rng.uniform(0, 4, n), 3)
        offset = onset + np.round(rng.uniform(0.005, 1.5, n), 3)
        pitch = rng.integers(48, 80, n)
        pitch[:3] = pitch[3]  # force doublings
        notes = make_notes(onset, offset, pitch, 80, track=rng.integers(0, 3, n))
        f = extract(notes)
        h, m, s = _brute_grid(notes)
        assert np.allclose(f["vertical_interval_hist"], h)
        assert f["polyphony_mean"][0] == pytest.approx(m)
        assert f["polyphony_std"][0] == pytest.approx(s)


def test_extract_many_stacks():
    a = make_notes([0, 0, 0], [1, 1, 1], [60, 64, 67], 80)
    b = make_notes([0.0, 0.5], [1.0, 2.0], [60, 67], 80)
    empty = np.zeros(0, dtype=NOTE_DTYPE)
    tms = [None, [[0.0, 0.25]], None]
    out = extract_many([a, b, empty], tempo_maps=tms, progress=True)
    assert list(out) == list(FEATURE_DIMS)
    for i, (notes, tm) in enumerate(zip([a, b, empty], tms)):
        one = extract(notes, tempo_map=tm)
        for name, d in FEATURE_DIMS.items():
            assert out[name].shape == (3, d) and out[name].dtype == np.float64
            assert np.array_equal(out[name][i], one[name])
    assert extract_many([])["pitch_class_hist"].shape == (0, 12)
    with pytest.raises(ValueError):
        extract_many([a], tempo_maps=[None, None])


# ----------------------------------------------------------------------------
# MIDI I/O
# ----------------------------------------------------------------------------


def _example_notes():
    # some times off the tick grid (0.2501, 1.0007, 2.4137) to exercise rounding
    onset = np.array([0.0, 0.0, 0.2501, 0.5, 1.0007, 1.0, 1.6, 2.2, 2.3])
    offset = np.array([0.5, 1.0, 0.75, 1.0, 1.5, 2.5, 2.0, 3.0, 2.4137])
    pitch = [60, 48, 64, 67, 72, 36, 71, 60, 62]
    vel = [100, 60, 90, 80, 70, 50, 110, 30, 127]
    track = [0, 1, 0, 0, 0, 1, 0, 2, 2]
    return make_notes(onset, offset, pitch, vel, track=track)


def test_midi_round_trip_with_tempo_change(tmp_path):
    notes = _example_notes()
    tm = np.array([[0.0, 0.5], [1.0, 0.4]])  # 120 -> 150 BPM at 1 s (beat 2)
    path = tmp_path / "rt.mid"
    write_midi(path, notes, tempo_map=tm, ticks_per_beat=480)
    assert [p.name for p in tmp_path.iterdir()] == ["rt.mid"]
    back, tm_back = read_midi(path)
    assert np.allclose(tm_back, tm)
    tick = 0.5 / 480  # longest tick, in seconds
    assert back.size == notes.size
    assert np.all(np.abs(back["onset"] - notes["onset"]) <= tick)
    assert np.all(np.abs(back["offset"] - notes["offset"]) <= tick)
    for field in ("pitch", "velocity", "track"):
        assert np.array_equal(back[field], notes[field])
    # features agree (durations and grid within rounding)
    fa, fb = extract(notes, tempo_map=tm), extract(path)
    for name in ("pitch_class_hist", "melodic_interval_hist", "velocity_std", "pitch_range"):
        assert np.allclose(fa[name], fb[name])
    assert fb["mean_rhythmic_value"][0] == pytest.approx(fa["mean_rhythmic_value"][0], abs=1e-2)


def test_read_midi_matches_pretty_midi(tmp_path):
    pretty_midi = pytest.importorskip("pretty_midi")
    path = tmp_path / "ref.mid"
    write_midi(path, _example_notes(), tempo_map=[[0.0, 0.5], [1.0, 0.4]], ticks_per_beat=96)
    notes, _ = read_midi(path)
    pm = pretty_midi.PrettyMIDI(str(path))
    assert len(pm.instruments) == 3
    ref = sorted(
        (k, n.pitch, round(n.start, 6), n.end, n.velocity) for k, inst in enumerate(pm.instruments) for n in inst.notes
    )
    ours = sorted(
        (int(n["track"]), int(n["pitch"]), round(float(n["onset"]), 6), float(n["offset"]), int(n["velocity"]))
        for n in notes
    )
    assert len(ours) == len(ref) == 9
    for a, b in zip(ours, ref):
        assert a[:2] == b[:2] and a[4] == b[4]
        assert a[2] == pytest.approx(b[2], abs=1e-9) and a[3] == pytest.approx(b[3], abs=1e-9)


def _save(tmp_path, name, tracks, tpb=480, type_=1):
    mid = mido.MidiFile(type=type_, ticks_per_beat=tpb)
    for msgs in tracks:
        mid.tracks.append(mido.MidiTrack(msgs))
    path = tmp_path / name
    mid.save(str(path))
    return path


def test_read_midi_event_semantics(tmp_path):
    M, Meta = mido.Message, mido.MetaMessage
    # 480 ticks per beat, 120 BPM -> 1 tick = 1/960 s; 480 ticks = 0.5 s
    tracks = [
        [Meta("set_tempo", tempo=500000, time=0), Meta("set_tempo", tempo=250000, time=960)],
        [
            M("note_on", note=60, velocity=100, channel=0, time=0),
            M("note_on", note=60, velocity=50, channel=0, time=240),  # overlap, same pitch
            M("note_on", note=60, velocity=0, channel=0, time=240),  # vel-0 off: closes 1st
            M("note_off", note=60, velocity=0, channel=0, time=480),  # closes 2nd
            M("note_off", note=61, velocity=0, channel=0, time=0),  # spurious: ignored
            M("note_on", note=62, velocity=70, channel=0, time=0),
            M("note_off", note=62, velocity=0, channel=0, time=0),  # zero length: dropped
            M("note_on", note=38, velocity=90, channel=9, time=0),  # drums, never closed
            M("note_on", note=64, velocity=80, channel=1, time=0),
            M("note_off", note=64, velocity=0, channel=1, time=480),  # tick 1440
        ],
        [
            M("note_on", note=40, velocity=20, channel=0, time=0),
            Meta("end_of_track", time=1920),
        ],  # never closed; last event at tick 1920
    ]
    notes, tm = read_midi(_save(tmp_path, "ev.mid", tracks))
    # tick -> s: 120 BPM to tick 960 (1.0 s), then 240 BPM (1/1920 s per tick)
    got = sorted((n["onset"], n["offset"], n["pitch"], n["velocity"], n["track"]) for n in notes)
    expected = sorted(
        [
            (0.0, 0.5, 60, 100, 0),
            (0.25, 1.0, 60, 50, 0),
            (1.0, 1.25, 64, 80, 1),  # track 1, channel 1
            (1.0, 1.5, 38, 90, 2),  # track 1, channel 10 (drums): closed at last event
            (0.0, 1.5, 40, 20, 3),  # track 2: closed at end of its end_of_track
        ]
    )
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g[0] == pytest.approx(e[0]) and g[1] == pytest.approx(e[1])
        assert tuple(int(x) for x in g[2:]) == e[2:]
    assert np.allclose(tm, [[0.0, 0.5], [1.0, 0.25]])


def test_read_midi_default_tempo_when_missing(tmp_path):
    M = mido.Message
    path = _save(
        tmp_path,
        "t0.mid",
        [[M("note_on", note=60, velocity=64, time=0), M("note_off", note=60, velocity=0, time=480)]],
        type_=0,
    )
    notes, tm = read_midi(path)
    assert np.allclose(tm, [[0.0, 0.5]])
    assert notes["offset"][0] == pytest.approx(0.5)


def test_corrupt_midi_raises_naming_file(tmp_path):
    path = tmp_path / "garbage.mid"
    path.write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(ValueError, match="garbage.mid"):
        read_midi(path)
    truncated = tmp_path / "truncated.mid"
    write_midi(tmp_path / "ok.mid", _example_notes())
    truncated.write_bytes((tmp_path / "ok.mid").read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated.mid"):
        read_midi(truncated)
    with pytest.raises(ValueError, match="garbage.mid"):
        extract(path)


def test_empty_midi_raises_naming_file(tmp_path):
    path = _save(tmp_path, "empty.mid", [[mido.MetaMessage("set_tempo", tempo=500000, time=0)]])
    with pytest.raises(ValueError, match=r"empty\.mid: MIDI file contains no notes"):
        read_midi(path)
    # writing an empty note list is allowed, reading it back is not
    write_midi(tmp_path / "none.mid", np.zeros(0, dtype=NOTE_DTYPE))
    with pytest.raises(ValueError, match="contains no notes"):
        read_midi(tmp_path / "none.mid")


def test_write_midi_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.mid"
    target.write_bytes(b"old")

    def broken_save(self, filename=None, file=None):
        with open(filename, "wb") as fh:
            fh.write(b"MThd partial")
        raise OSError("disk full")

    monkeypatch.setattr(mido.MidiFile, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_midi(target, _example_notes())
    assert [p.name for p in tmp_path.iterdir()] == ["out.mid"]
    assert target.read_bytes() == b"old"


def test_write_midi_rejects_invalid_notes(tmp_path):
    bad = _example_notes()
    bad["onset"][0] = -1.0
    with pytest.raises(ValueError):
        write_midi(tmp_path / "bad.mid", bad)
    assert list(tmp_path.iterdir()) == []


def test_module_exports():
    assert set(symbolic.__all__) >= {"extract", "extract_many", "CHANNELS", "FEATURE_DIMS"}
