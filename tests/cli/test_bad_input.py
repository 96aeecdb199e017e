"""Bad input gets a clear error naming the file and the problem; nothing half-written."""

import json

import numpy as np
import pandas as pd
import pytest

from aria.cli import main
from aria.io.midi import write_midi
from aria.io.stores import ScoreWriter
from aria.symbolic.notes import make_notes

SEG_PARAMS = json.dumps({"root": None, "block_tokens": 32, "prompt_tokens": 8})


def _corpus(tmp_path, n=4):
    (tmp_path / "midi").mkdir()
    rows = []
    for i in range(n):
        notes = make_notes(np.arange(16) * 0.25, np.arange(16) * 0.25 + 0.2, 60 + i + np.arange(16) % 5, 70)
        write_midi(tmp_path / "midi" / f"t{i}.mid", notes)
        rows.append(dict(track_id=f"t{i}", path=f"midi/t{i}.mid", genre="g", split="eval" if i == 0 else "train"))
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def _segments(tmp_path, manifest):
    out = tmp_path / "out"
    return main(
        [
            "symbolic-segments",
            "--manifest",
            str(manifest),
            "--params",
            SEG_PARAMS,
            "--out-train",
            str(out / "train.npz"),
            "--out-eval",
            str(out / "eval.npz"),
            "--out-csv",
            str(out / "segments.csv"),
        ]
    ), out


def test_user_corpus_segments_ok(tmp_path):
    rc, out = _segments(tmp_path, _corpus(tmp_path))
    assert rc == 0
    seg = pd.read_csv(out / "segments.csv")
    assert set(seg["track_id"]) == {"t1", "t2", "t3"}


def test_corrupt_midi_names_the_file(tmp_path):
    man = _corpus(tmp_path)
    bad = tmp_path / "midi" / "t2.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage-not-midi")
    with pytest.raises(ValueError, match=r"t2\.mid"):
        _segments(tmp_path, man)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_manifest_naming_missing_file(tmp_path):
    man = _corpus(tmp_path)
    (tmp_path / "midi" / "t3.mid").unlink()
    with pytest.raises(
        ValueError, match=r"manifest\.csv: 1 file\(s\) named in the manifest do not exist: t3 -> .*t3\.mid"
    ):
        _segments(tmp_path, man)


def test_manifest_bad_split_and_columns(tmp_path):
    man = _corpus(tmp_path)
    df = pd.read_csv(man)
    df.loc[1, "split"] = "training"
    df.to_csv(man, index=False)
    with pytest.raises(ValueError, match=r"split must be 'train' or 'eval'.*t1"):
        _segments(tmp_path, man)
    df.drop(columns=["genre"]).to_csv(man, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['genre'\]"):
        _segments(tmp_path, man)


def test_nan_scores_never_reach_disk(tmp_path):
    path = tmp_path / "scores" / "m.zarr"
    block = np.ones((5, 3), np.float32)
    block[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"m\.zarr: non-finite score at row 2, column 1"):
        with ScoreWriter(path, [f"r{i}" for i in range(5)], ["a", "b", "c"]) as w:
            w.write(0, block)
    assert not path.exists()
    assert list((tmp_path / "scores").iterdir()) == []  # no temporary left behind


def test_score_writer_requires_every_row(tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError, match="wrote 2 score rows, expected 5"):
        with ScoreWriter(path, [f"r{i}" for i in range(5)], ["a"]) as w:
            w.write(0, np.zeros((2, 1)))
    assert not path.exists()


def test_diagnostics_nan_store_names_it(tmp_path):
    import zarr

    path = tmp_path / "s.zarr"
    with ScoreWriter(path, [f"r{i}" for i in range(6)], ["a", "b"]) as w:
        w.write(0, np.arange(12, dtype=np.float32).reshape(6, 2))
    zarr.open_group(str(path), mode="r+")["scores"][3, 0] = np.inf
    out = tmp_path / "d.json"
    with pytest.raises(ValueError, match=r"s\.zarr"):
        main(["diagnostics", "--scores", str(path), "--out", str(out)])
    assert not out.exists()


def test_bad_audio_is_skipped_with_reasons(tmp_path):
    """Truncated, empty and all-silent files are skipped with a logged reason; the shard completes."""
    import soundfile as sf

    sr = 22050
    t = np.arange(3 * sr) / sr
    good = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t)))).astype(np.float32)
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "good.wav", good, sr)
    sf.write(tmp_path / "a" / "silent.wav", np.zeros(3 * sr, np.float32), sr)
    sf.write(tmp_path / "a" / "full.wav", good, sr)
    data = (tmp_path / "a" / "full.wav").read_bytes()
    (tmp_path / "a" / "truncated.wav").write_bytes(data[: len(data) // 2])
    (tmp_path / "a" / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "a" / "rate44k.wav", np.repeat(good, 2), 44100)  # other sample rate: loads
    names = ["good", "silent", "truncated", "empty", "rate44k"]
    pd.DataFrame(dict(track_id=names, path=[f"a/{n}.wav" for n in names], genre="g", split="train")).to_csv(
        tmp_path / "m.csv", index=False
    )
    out, fails = tmp_path / "f.npz", tmp_path / "skipped.csv"
    assert (
        main(
            [
                "audio-features",
                "--manifest",
                str(tmp_path / "m.csv"),
                "--out",
                str(out),
                "--out-failures",
                str(fails),
                "--params",
                json.dumps({"shard": 0, "n_shards": 1, "sr": sr, "root": None}),
            ]
        )
        == 0
    )
    with np.load(out) as z:
        assert list(z["track_ids"]) == ["good", "rate44k"]
    skipped = pd.read_csv(fails)
    reasons = dict(zip([p.split("/")[-1] for p in skipped["path"]], skipped["reason"]))
    assert set(reasons) == {"silent.wav", "truncated.wav", "empty.wav"}
    assert "silent" in reasons["silent.wav"].lower() and "truncat" in reasons["truncated.wav"].lower()
    assert "empty" in reasons["empty.wav"].lower() or "zero" in reasons["empty.wav"].lower()


def test_null_names_a_pool_smaller_than_k(tmp_path):
    """Items can drop out after the pool check (failed feature extraction): the null job names it."""
    from aria.io.tables import write_npz
    from aria.symbolic.features import FEATURE_DIMS

    rng = np.random.default_rng(0)
    feats = {f: rng.random((6, d)) for f, d in FEATURE_DIMS.items()}
    write_npz(tmp_path / "ev.npz", segment_ids=np.array([f"s{i}" for i in range(6)]), **feats)
    params = json.dumps({"ks": [3, 10], "n_groups": 5, "seed": 0})
    with pytest.raises(ValueError, match=r"ev\.npz: K = \[10\] \(homogeneity\.ks\) exceeds the 6 pool items"):
        main(["null", "--features", str(tmp_path / "ev.npz"), "--params", params, "--out", str(tmp_path / "n.json")])
    assert not (tmp_path / "n.json").exists()


def test_embedding_frames_of_another_encoder_are_refused(tmp_path):
    """embed-baseline given frames written by another encoder (or at another rate) names the file
    and the mismatch, and writes no score store; a file that is not a frames file is named too."""
    from aria.io.layouts import write_corpus_frames
    from aria.io.tables import write_npz

    frames = tmp_path / "frames.npz"
    write_corpus_frames(frames, ["a", "b"], [np.zeros((3, 4)), np.ones((2, 4))], encoder="basic_pitch", sr=22050)
    out, aaa = tmp_path / "s.zarr", tmp_path / "s_aaa.zarr"
    args = ["embed-baseline", "--encoder", "aisfx", "--queries", str(tmp_path / "q.npz")]
    args += ["--queries-audio", str(tmp_path), "--out", str(out), "--out-aaa", str(aaa)]
    params = json.dumps({"sr": 22050, "window_s": 10.0, "hop_s": 1.0})
    with pytest.raises(ValueError, match=r"frames\.npz: frames of basic_pitch at 22050 Hz, expected aisfx"):
        main([*args, "--corpus", str(frames), "--params", params])
    write_npz(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz: not an encoder-frames file"):
        main([*args, "--corpus", str(tmp_path / "other.npz"), "--params", params])
    assert not out.exists() and not aaa.exists()
