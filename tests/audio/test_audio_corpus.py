"""Audio corpus layer: SoundFont rendering, WAV writing, instrument choice,
excerpts, quality filters, FMA metadata and audio manifests.

Rendering tests need Debian's fluid-soundfont-gm (or $ARIA_SOUNDFONT) and are
skipped without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile
import soundfile as sf

from aria.audio.corpus import (
    GM_FAMILIES,
    assign_programs,
    filter_tracks,
    program_family,
    select_excerpt,
    stable_seed,
)
from aria.audio.render import render_midi, resolve_soundfont
from aria.io.audio import write_wav
from aria.io.fma import fma_audio_path, read_audio_manifest, read_fma_tracks
from aria.symbolic.notes import NOTE_DTYPE, make_notes

SR = 22050
FLUTE, SAW_LEAD = 73, 81  # General MIDI programs, 0-based


def _have_soundfont() -> bool:
    try:
        resolve_soundfont()
    except FileNotFoundError:
        return False
    return True


needs_sf2 = pytest.mark.skipif(not _have_soundfont(), reason="no General MIDI SoundFont (fluid-soundfont-gm)")


def _rms(y):
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


# --- rendering ---------------------------------------------------------------


@needs_sf2
def test_a4_renders_at_440_hz_with_requested_length():
    notes = make_notes([0.0], [1.0], [69], [100], [0])
    y = render_midi(notes, programs={0: FLUTE}, sr=SR, duration_s=1.0)
    assert y.dtype == np.float32 and y.shape == (SR,)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1.0 / SR)
    assert abs(freqs[np.argmax(spec)] - 440.0) <= 3.0
    # peak normalised to -1 dBFS
    assert np.max(np.abs(y)) == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    # default length: last offset + tail
    y2 = render_midi(notes, programs=[FLUTE], sr=SR, tail_s=0.5)
    assert y2.shape == (int(round(1.5 * SR)),)


@needs_sf2
def test_programs_differ_in_spectral_centroid():
    import librosa

    notes = make_notes([0.0], [1.0], [69], [100], [0])
    cent = {}
    for prog in (FLUTE, SAW_LEAD):
        y = render_midi(notes, programs=[prog], sr=SR, duration_s=1.0)
        cent[prog] = float(np.mean(librosa.feature.spectral_centroid(y=y, sr=SR)))
    assert cent[SAW_LEAD] > 1.5 * cent[FLUTE]


@needs_sf2
def test_silence_before_and_between_notes():
    # a loud organ piece first: nothing of it may leak into the next render
    render_midi(make_notes([0.0], [1.0], [60], [127], [0]), programs=[19], sr=SR, duration_s=0.5)
    notes = make_notes([0.5, 2.0], [1.0, 2.5], [69, 69], [100, 100], [0, 0])
    y = render_midi(notes, programs=[FLUTE], sr=SR)
    assert y.shape == (int(round(3.5 * SR)),)
    assert np.max(np.abs(y[: int(0.5 * SR)])) == 0.0
    assert _rms(y[int(0.6 * SR) : int(0.9 * SR)]) > 0.05
    assert _rms(y[int(1.5 * SR) : int(2.0 * SR)]) < 1e-3


@needs_sf2
def test_render_tracks_map_to_programs_and_bad_programs_fail():
    notes = make_notes([0.0, 0.0], [0.5, 0.5], [60, 64], [90, 90], [0, 1])
    y = render_midi(notes, programs={0: 0, 1: 40}, sr=SR, duration_s=0.5)
    assert y.shape == (SR // 2,) and np.isfinite(y).all()
    with pytest.raises(ValueError, match="track 1"):
        render_midi(notes, programs={0: 0}, sr=SR)
    with pytest.raises(ValueError, match="0..127"):
        render_midi(notes, programs=[0, 128], sr=SR)
    assert not render_midi(np.zeros(0, NOTE_DTYPE), programs={}, sr=SR, duration_s=0.1).any()


def test_missing_soundfont_error_says_how_to_fix(tmp_path):
    notes = make_notes([0.0], [1.0], [69], [100], [0])
    with pytest.raises(FileNotFoundError, match="fluid-soundfont-gm") as err:
        render_midi(notes, programs=[0], soundfont=tmp_path / "none.sf2")
    assert "ARIA_SOUNDFONT" in str(err.value)


# --- WAV writing ---------------------------------------------------------------


def test_write_wav_round_trip(tmp_path):
    t = np.arange(SR // 4) / SR
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = tmp_path / "sub" / "a.wav"
    write_wav(out, y, SR)
    back, sr = sf.read(out, dtype="float32")
    info = sf.info(out)
    assert sr == SR and info.subtype == "PCM_16" and info.channels == 1
    # 16-bit quantization: 1 LSB = 2^-15 at most (truncation or rounding; measured 1 LSB), atol 2 LSB
    np.testing.assert_allclose(back, y, atol=1 / 2**14)
    assert [p.name for p in out.parent.iterdir()] == ["a.wav"]


def test_write_wav_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def broken_write(file, data, samplerate, **kw):
        with open(file, "wb") as fh:
            fh.write(b"RIFF partial")
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_wav(tmp_path / "a.wav", np.zeros(100, np.float32), SR)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="non-finite"):
        write_wav(tmp_path / "b.wav", np.array([0.0, np.nan]), SR)
    assert list(tmp_path.iterdir()) == []


# --- instruments and excerpts -----------------------------------------------------


def test_assign_programs_is_seeded_varied_and_melodic():
    a = [assign_programs(4, random_state=s) for s in range(50)]
    b = [assign_programs(4, random_state=s) for s in range(50)]
    assert a == b
    assert a != [assign_programs(4, random_state=s + 1000) for s in range(50)]
    flat = np.array(a).ravel()
    assert flat.min() >= 0 and flat.max() <= 111
    assert all(program_family(p) is not None for p in flat)
    families = {program_family(p) for p in flat}
    assert len(families) >= 8
    # pieces mostly stay in one family: the modal family covers >= half the voices
    modal = [max(pd.Series([program_family(p) for p in progs]).value_counts()) for progs in a]
    assert np.mean(modal) >= 2.5
    assert assign_programs(0, random_state=1) == []
    assert set(assign_programs(6, random_state=3, contrast=0.0)) <= set(
        GM_FAMILIES[program_family(assign_programs(6, random_state=3, contrast=0.0)[0])]
    )
    with pytest.raises(ValueError, match="random_state"):
        assign_programs(3, random_state=None)
    assert stable_seed(0, "t1") == stable_seed(0, "t1") != stable_seed(0, "t2")


def test_select_excerpt_clips_offsets():
    notes = make_notes([0.0, 1.0, 29.5, 31.0], [2.0, 1.5, 33.0, 32.0], [60, 62, 64, 65], [80] * 4, [0, 1, 0, 1])
    ex = select_excerpt(notes, duration_s=30.0)
    assert ex.dtype == NOTE_DTYPE
    np.testing.assert_array_equal(ex["pitch"], [60, 62, 64])
    np.testing.assert_allclose(ex["offset"], [2.0, 1.5, 30.0])
    ex = select_excerpt(notes, duration_s=2.0, start_s=1.0)
    np.testing.assert_array_equal(ex["pitch"], [60, 62])
    np.testing.assert_allclose(ex["onset"], [0.0, 0.0])
    np.testing.assert_allclose(ex["offset"], [1.0, 0.5])


# --- quality filters --------------------------------------------------------------


def _tracks():
    return pd.DataFrame(
        {
            "track_id": ["a", "b", "c", "d", "e", "f"],
            "genre": ["Rock", "Experimental", "Experimental", "Experimental", "Rock", None],
            "listens": [5, 50, 500, 500, 1, 0],
            "favorites": [0, 9, 0, 9, 0, 0],
            "silence_share": [0.1, 0.2, 0.1, 0.9, 0.6, 0.0],
        }
    )


def test_filter_tracks_drops_expected_rows_with_reasons():
    kept, dropped = filter_tracks(
        _tracks(), max_silence_share=0.5, drop_genre="Experimental", min_listens=100, min_favorites=1
    )
    assert list(kept["track_id"]) == ["a", "f"]
    assert dict(zip(dropped["track_id"], dropped["reason"])) == {
        "b": "low_engagement",
        "c": "low_engagement",
        "d": "silence",
        "e": "silence",
    }
    assert list(kept.columns) == list(_tracks().columns)

    kept, dropped = filter_tracks(_tracks(), max_silence_share=0.95, drop_genre="Experimental", min_listens=100)
    assert list(kept["track_id"]) == ["a", "c", "d", "e", "f"]
    assert list(dropped["reason"]) == ["low_engagement"]

    _, dropped = filter_tracks(_tracks(), max_silence_share=0.5, drop_genre="Experimental")
    assert dict(zip(dropped["track_id"], dropped["reason"])) == {
        "b": "genre",
        "c": "genre",
        "d": "silence;genre",
        "e": "silence",
    }

    kept, dropped = filter_tracks(_tracks(), max_silence_share=None)
    assert len(kept) == 6 and len(dropped) == 0 and "reason" in dropped.columns


def test_filter_tracks_errors_name_columns_and_tracks():
    with pytest.raises(ValueError, match="silence_share"):
        filter_tracks(_tracks().drop(columns="silence_share"), max_silence_share=0.5)
    bad = _tracks()
    bad.loc[1, "listens"] = np.nan
    with pytest.raises(ValueError, match=r"listens.*\['b'\]"):
        filter_tracks(bad, max_silence_share=None, drop_genre="Experimental", min_listens=10)
    # a missing value outside the filtered genre is fine
    bad = _tracks()
    bad.loc[0, "listens"] = np.nan
    kept, _ = filter_tracks(bad, max_silence_share=None, drop_genre="Experimental", min_listens=10)
    assert "a" in set(kept["track_id"])


# --- FMA metadata -----------------------------------------------------------------

# Same layout as fma_metadata/tracks.csv: two header rows and a track_id row;
# album/artist also carry listens/favorites, which must not be picked up.
FMA_CSV = """\
,album,album,artist,set,set,track,track,track,track,track,track
,favorites,listens,favorites,split,subset,duration,favorites,genre_top,genres,listens,title
track_id,,,,,,,,,,,
2,4,6073,9,training,small,168,2,Hip-Hop,[21],1293,Food
3,4,6073,9,validation,medium,237,1,Hip-Hop,[21],514,Electric Ave
5,4,6073,9,test,small,206,6,,[21],1151,This World
10,1,47632,74,training,large,161,178,Experimental,"[1, 10]",50135,Freeway
"""


@pytest.mark.parametrize("index_row", [True, False])
def test_read_fma_tracks_multi_header(tmp_path, index_row):
    text = (
        FMA_CSV
        if index_row
        else "\n".join(line for line in FMA_CSV.splitlines() if not line.startswith("track_id")) + "\n"
    )
    path = tmp_path / "tracks.csv"
    path.write_text(text)
    df = read_fma_tracks(path)
    assert list(df.columns[:6]) == ["track_id", "genre", "listens", "favorites", "split", "duration"]
    assert list(df["track_id"]) == ["2", "3", "5", "10"]
    assert df["genre"].tolist()[:2] == ["Hip-Hop", "Hip-Hop"] and pd.isna(df["genre"][2])
    assert df["genre"][3] == "Experimental"
    assert df["listens"].tolist() == [1293, 514, 1151, 50135]
    assert df["favorites"].tolist() == [2, 1, 6, 178]
    assert df["split"].tolist() == ["train", "eval", "eval", "train"]
    assert df["duration"].tolist() == [168.0, 237.0, 206.0, 161.0]
    assert df["fma_split"].tolist() == ["training", "validation", "test", "training"]
    assert read_fma_tracks(path, subset="small")["track_id"].tolist() == ["2", "5"]
    assert read_fma_tracks(path, subset="medium")["track_id"].tolist() == ["2", "3", "5"]


def test_read_fma_tracks_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tracks.csv"):
        read_fma_tracks(tmp_path / "tracks.csv")
    path = tmp_path / "tracks.csv"
    path.write_text(FMA_CSV.replace(",validation,", ",holdout,"))
    with pytest.raises(ValueError, match=r"tracks\.csv.*split.*\['3'\]"):
        read_fma_tracks(path)
    path.write_text(FMA_CSV.replace("genre_top", "genre_main"))
    with pytest.raises(ValueError, match="track.genre_top"):
        read_fma_tracks(path)


def test_fma_audio_path():
    assert fma_audio_path("fma_small", 2).as_posix() == "fma_small/000/000002.mp3"
    assert fma_audio_path("fma_small", "155066").as_posix() == "fma_small/155/155066.mp3"


# --- audio manifests ----------------------------------------------------------------


def test_read_audio_manifest(tmp_path):
    (tmp_path / "audio").mkdir()
    for name in ("a.wav", "b.wav"):
        write_wav(tmp_path / "audio" / name, np.zeros(10, np.float32), SR)
    man = tmp_path / "manifest.csv"
    man.write_text(
        "track_id,path,genre,split,listens\na,audio/a.wav,Rock,train,10\nb,audio/b.wav,Experimental,eval,3\n"
    )
    df = read_audio_manifest(man)
    assert list(df["track_id"]) == ["a", "b"]
    assert df["listens"].tolist() == [10.0, 3.0]
    assert df["abspath"].tolist() == [str((tmp_path / "audio" / n).resolve()) for n in ("a.wav", "b.wav")]

    man.write_text("track_id,path,genre,split\na,audio/a.wav,Rock,train\nc,audio/missing.wav,Rock,eval\n")
    with pytest.raises(ValueError, match=r"manifest\.csv.*c -> .*missing\.wav"):
        read_audio_manifest(man)

    man.write_text("track_id,path,genre,split,favorites\na,audio/a.wav,Rock,train,many\n")
    with pytest.raises(ValueError, match=r"manifest\.csv.*favorites.*\['a'\]"):
        read_audio_manifest(man)

    man.write_text("track_id,path,genre,split\na,audio/a.wav,,train\n")
    with pytest.raises(ValueError, match=r"manifest\.csv.*genre.*\['a'\]"):
        read_audio_manifest(man)
