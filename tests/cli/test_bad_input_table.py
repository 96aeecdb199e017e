"""README's bad-input table, row by row: each kind of bad input is made here and must give the
message README shows for it (README "Bad input: what you will see"). The table is read from
README itself, so the two cannot drift apart; every row must have a case here and every case a
row.

In README's messages, ``<...>`` stands for a part that varies (a path, a count); the rest must
appear in the error, in that order.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from aria.cli import main
from aria.io.midi import write_midi
from aria.symbolic.notes import make_notes

REPO = Path(__file__).resolve().parents[2]
SR = 22050


def readme_rows():
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- bad-input-table -->")[1]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] and not cells[0].startswith(("Bad input", "---")):
            rows[cells[0]] = cells[1].strip("`")
    return rows


def _error(argv, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0, f"{argv[0]} accepted it"
    return err


def _raises(fn) -> str:
    with pytest.raises((ValueError, RuntimeError, OSError)) as info:
        fn()
    return str(info.value)


# --------------------------------------------------------------------------- audio


def _tone(seconds):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2).astype(np.float32)


def _audio_import(tmp_path, make):
    """audio-import on a manifest of two good tracks plus the bad one; the dropped table's reason."""
    import soundfile as sf

    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "good1.wav", _tone(3), SR)
    sf.write(d / "good2.wav", _tone(3), SR)
    bad = make(d)
    rows = [("good1", "good1.wav", "train"), ("good2", "good2.wav", "eval"), ("bad", bad.name, "train")]
    pd.DataFrame([dict(track_id=t, path=p, genre="g", split=s) for t, p, s in rows]).to_csv(
        tmp_path / "m.csv", index=False
    )
    params = {"kind": "audio_folder", "audio_folder": {"manifest": str(tmp_path / "m.csv"), "root": str(d)}, "sr": SR}
    out, dropped = tmp_path / "manifest.csv", tmp_path / "dropped.csv"
    # a separate process, so that what native decoders print to stderr is seen as a user sees it
    res = subprocess.run(
        [sys.executable, "-m", "aria", "audio-import", "--params", json.dumps(params), "--out", str(out)]
        + ["--out-dropped", str(dropped)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Note: " not in res.stderr and "[src/libmpg123" not in res.stderr, "decoder noise leaked to stderr"
    kept = pd.read_csv(out)["track_id"].tolist()
    assert kept == ["good1", "good2"], kept
    reason = pd.read_csv(dropped).set_index("track_id").loc["bad", "reason"]
    return str(reason)


def corrupt_audio(tmp_path, capsys):
    return _audio_import(tmp_path, lambda d: _write(d / "bad.wav", b"RIFF\x00\x01\x00\x00WAVEjunk" + bytes(500)))


def empty_audio(tmp_path, capsys):
    return _audio_import(tmp_path, lambda d: _write(d / "bad.wav", b""))


def truncated_wav(tmp_path, capsys):
    import soundfile as sf

    def make(d):
        sf.write(d / "full.wav", _tone(3), SR)
        return _write(d / "bad.wav", (d / "full.wav").read_bytes()[:40000])

    return _audio_import(tmp_path, make)


def truncated_ogg(tmp_path, capsys):
    import soundfile as sf

    def make(d):
        sf.write(d / "full.ogg", np.tile(_tone(3), 10), SR, format="OGG", subtype="VORBIS")
        return _write(d / "bad.ogg", (d / "full.ogg").read_bytes()[:30000])

    return _audio_import(tmp_path, make)


def html_saved_as_mp3(tmp_path, capsys):
    page = b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body>denied</body></html>\n"
    return _audio_import(tmp_path, lambda d: _write(d / "bad.mp3", page))


def audio_too_short(tmp_path, capsys):
    import soundfile as sf

    def make(d):
        sf.write(d / "bad.wav", _tone(0.07), SR)
        return d / "bad.wav"

    return _audio_import(tmp_path, make)


def silent_audio(tmp_path, capsys):
    import soundfile as sf

    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    pd.DataFrame([dict(track_id="s", path="silent.wav", genre="g", split="train")]).to_csv(
        tmp_path / "m.csv", index=False
    )
    params = {"shard": 0, "n_shards": 1, "sr": SR, "root": str(tmp_path)}
    argv = ["audio-features", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "f.npz")]
    assert main([*argv, "--out-failures", str(tmp_path / "skipped.csv"), "--params", json.dumps(params)]) == 0
    return str(pd.read_csv(tmp_path / "skipped.csv")["reason"].iloc[0])


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- MIDI and manifests


SEG_PARAMS = json.dumps({"root": None, "block_tokens": 32, "prompt_tokens": 8})


def _midi_corpus(tmp_path, extra):
    (tmp_path / "midi").mkdir()
    rows = []
    for i in range(3):
        notes = make_notes(np.arange(16) * 0.25, np.arange(16) * 0.25 + 0.2, 60 + i + np.arange(16) % 5, 70)
        write_midi(tmp_path / "midi" / f"t{i}.mid", notes)
        rows.append(dict(track_id=f"t{i}", path=f"midi/t{i}.mid", genre="g", split="eval" if i == 0 else "train"))
    for name, make in extra.items():
        make(tmp_path / "midi" / f"{name}.mid")
        rows.append(dict(track_id=name, path=f"midi/{name}.mid", genre="g", split="train"))
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def _segments(tmp_path, manifest, capsys):
    out = tmp_path / "out"
    argv = ["symbolic-segments", "--manifest", str(manifest), "--params", SEG_PARAMS]
    argv += ["--out-train", str(out / "train.npz"), "--out-eval", str(out / "eval.npz")]
    with pytest.raises(ValueError) as info:
        main([*argv, "--out-csv", str(out / "segments.csv")])
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    return str(info.value)


def _empty_midi(path):
    import mido

    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("end_of_track", time=0)]))
    mid.save(path)


def _drums_midi(path):
    import mido

    mid = mido.MidiFile()
    track = mido.MidiTrack()
    for k in range(8):
        track.append(mido.Message("note_on", channel=9, note=36 + k % 3, velocity=90, time=0 if k == 0 else 120))
        track.append(mido.Message("note_off", channel=9, note=36 + k % 3, velocity=0, time=120))
    mid.tracks.append(track)
    mid.save(path)


def empty_midi(tmp_path, capsys):
    return _segments(tmp_path, _midi_corpus(tmp_path, {"bad": _empty_midi}), capsys)


def drums_only_midi(tmp_path, capsys):
    return _segments(tmp_path, _midi_corpus(tmp_path, {"bad": _drums_midi}), capsys)


def several_corrupt_midi(tmp_path, capsys):
    def junk(p):
        p.write_bytes(b"MThd\x00\x00\x00\x06junk")

    msg = _segments(tmp_path, _midi_corpus(tmp_path, {"bad1": junk, "bad2": junk, "bad3": _empty_midi}), capsys)
    assert all(f"bad{i}.mid" in msg for i in (1, 2, 3)), msg  # every bad file, in one pass
    return msg


def zero_byte_midi(tmp_path, capsys):
    return _segments(tmp_path, _midi_corpus(tmp_path, {"bad": lambda p: p.write_bytes(b"")}), capsys)


def _manifest_with(tmp_path, capsys, row, column, value):
    """symbolic-segments on a good corpus whose manifest has one cell changed."""
    m = _midi_corpus(tmp_path, {})
    df = pd.read_csv(m)
    df.loc[row, column] = value
    df.to_csv(m, index=False)
    return _segments(tmp_path, m, capsys)


def manifest_missing_file(tmp_path, capsys):
    return _manifest_with(tmp_path, capsys, 1, "path", "midi/gone.mid")


def manifest_duplicate_ids(tmp_path, capsys):
    return _manifest_with(tmp_path, capsys, 2, "track_id", "t1")


def manifest_bad_split(tmp_path, capsys):
    return _manifest_with(tmp_path, capsys, 1, "split", "test")


# --------------------------------------------------------------------------- score matrices


def _ids(tmp_path, n, q):
    (tmp_path / "rows.txt").write_text("".join(f"s{i}\n" for i in range(n)))
    (tmp_path / "cols.txt").write_text("".join(f"q{i}\n" for i in range(q)))
    return ["--rows", str(tmp_path / "rows.txt"), "--cols", str(tmp_path / "cols.txt")]


def _import(tmp_path, S, ids, capsys):
    np.save(tmp_path / "m.npy", S)
    err = _error(["import-scores", str(tmp_path / "m.npy"), *ids, "--out", str(tmp_path / "s.zarr")], capsys)
    assert not (tmp_path / "s.zarr").exists()
    return err


def nan_scores(tmp_path, capsys):
    S = np.ones((6, 3))
    S[4, 1] = np.nan
    return _import(tmp_path, S, _ids(tmp_path, 6, 3), capsys)


def _diagnose(path, capsys):
    return _error(["diagnose", str(path), "--json"], capsys)


def nan_in_npy_diagnose(tmp_path, capsys):
    S = np.arange(1.0, 19.0).reshape(6, 3)
    S[4, 1] = np.nan
    np.save(tmp_path / "m.npy", S)
    return _diagnose(tmp_path / "m.npy", capsys)


def _csv(tmp_path, cell):
    """A 6 x 3 matrix with ids (header ``id,q0,q1,q2``, first column ``s0..s5``), cell (4, 1) replaced."""
    body = [[f"{i * 3 + j + 1}" for j in range(3)] for i in range(6)]
    body[4][1] = cell
    lines = ["id,q0,q1,q2"] + [f"s{i}," + ",".join(r) for i, r in enumerate(body)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


def nan_in_csv(tmp_path, capsys):
    return _diagnose(_csv(tmp_path, "nan"), capsys)


def text_in_csv(tmp_path, capsys):
    return _diagnose(_csv(tmp_path, "n.a."), capsys)


def zero_byte_matrix(tmp_path, capsys):
    (tmp_path / "m.npy").write_bytes(b"")
    return _diagnose(tmp_path / "m.npy", capsys)


def truncated_npy(tmp_path, capsys):
    np.save(tmp_path / "full.npy", np.ones((6, 3)))
    data = (tmp_path / "full.npy").read_bytes()
    header = len(data) - 6 * 3 * 8  # what the file holds besides its float64 data
    (tmp_path / "m.npy").write_bytes(data[: header + 16])  # two of the 18 numbers
    return _diagnose(tmp_path / "m.npy", capsys)


def ids_not_matching(tmp_path, capsys):
    return _import(tmp_path, np.ones((6, 3)), _ids(tmp_path, 5, 3), capsys)


def wrong_orientation(tmp_path, capsys):
    return _import(tmp_path, np.ones((3, 6)), _ids(tmp_path, 6, 3), capsys)


# --------------------------------------------------------------------------- config, models, pools


def _tiny_config():
    return yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())


def config_typo(tmp_path, capsys):
    from aria.config import validate_config

    cfg = _tiny_config()
    cfg["methods"]["trak"]["dampng"] = cfg["methods"]["trak"].pop("damping")
    return _raises(lambda: validate_config(cfg, source="config.yaml"))


def config_out_of_range(tmp_path, capsys):
    from aria.config import validate_config

    cfg = _tiny_config()
    cfg["projection"]["k"] = 0
    return _raises(lambda: validate_config(cfg, source="config.yaml"))


def corpus_too_small_for_k(tmp_path, capsys):
    from aria.config import validate_config

    cfg = _tiny_config()
    cfg["homogeneity"] = {**cfg["homogeneity"], "ks": [3, 50], "main_k": 3}
    return _raises(lambda: validate_config(cfg, source="config.yaml"))


def manifest_smaller_than_k(tmp_path, capsys):
    from aria.config import validate_config

    man = tmp_path / "m.csv"
    rows = [("t0", "train"), ("t1", "eval"), ("t2", "train"), ("t3", "train")]
    man.write_text("track_id,path,genre,split\n" + "".join(f"{t},{t}.wav,g,{s}\n" for t, s in rows))
    cfg = _tiny_config()
    cfg["audio"]["corpus"] = {"kind": "audio_folder", "audio_folder": {"root": str(tmp_path), "manifest": str(man)}}
    cfg["homogeneity"] = {**cfg["homogeneity"], "ks": [2, 10], "main_k": 2}
    return _raises(lambda: validate_config(cfg, source="config.yaml"))


def missing_hf_cache(tmp_path, capsys, monkeypatch):
    from aria.audio.encoders import HFEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msgs = [_raises(lambda k=k: HFEncoder(k, cache_dir=tmp_path)) for k in ("clap", "mert")]
    assert "clap" in msgs[0].lower() and "mert" in msgs[1].lower()
    return msgs[1]


def wrong_architecture_checkpoint(tmp_path, capsys):
    from aria.io.checkpoints import load_model, write_checkpoint
    from aria.models.transformer import ModelConfig, MusicTransformer

    small = ModelConfig(vocab_size=40, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=64)
    other = MusicTransformer(ModelConfig(vocab_size=40, d_model=24, n_layers=1, n_heads=2, d_ff=32, max_len=64))
    state = {k: v.clone() for k, v in other.state_dict().items()}
    cfg = {k: getattr(small, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len")}
    path = tmp_path / "m0.pt"
    write_checkpoint(path, config=cfg, checkpoints=[{"epoch": 1, "state": state, "lr": 1e-3}], final=state)
    return _raises(lambda: load_model(path))


def audio_only_without_audio(tmp_path, capsys):
    """What a new user wrote: experiments: [audio] and the shared sections, but no audio section."""
    from aria.config import validate_config

    cfg = _tiny_config()
    cfg = {"experiments": ["audio"], **{k: cfg[k] for k in ("device", "seeds", "homogeneity")}}
    msg = _raises(lambda: validate_config(cfg, source="config my.yaml"))
    assert "'experiment'" not in msg, msg  # the top-level experiment is not asked for: audio.experiment names it
    return msg


def one_query_in_the_pool(tmp_path, capsys):
    """Segments of four training pieces and one eval prompt: refused by the pool check, nothing written."""
    from aria.io.tables import write_npz

    pd.DataFrame(dict(segment_id=[f"t{i}_s0" for i in range(4)], track_id=[f"t{i}" for i in range(4)])).to_csv(
        tmp_path / "segments.csv", index=False
    )
    write_npz(tmp_path / "eval.npz", track_ids=np.array(["e0"]), tokens=np.zeros((1, 8), np.int64))
    out = tmp_path / "pool.json"
    params = json.dumps({"ks": [2], "min_queries": 10, "unit": "segment"})
    argv = ["check-pool", "--segments", str(tmp_path / "segments.csv"), "--queries", str(tmp_path / "eval.npz")]
    msg = _raises(lambda: main([*argv, "--params", params, "--out", str(out)]))
    assert not out.exists()
    return msg


def every_eval_track_unreadable(tmp_path, capsys):
    """Two good training tracks, both eval tracks corrupt: the import is refused, and the dropped-tracks
    table, written first, lists both eval tracks with their reasons."""
    import soundfile as sf

    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "good1.wav", _tone(3), SR)
    sf.write(d / "good2.wav", _tone(3), SR)
    _write(d / "e1.wav", b"RIFF\x00\x01\x00\x00WAVEjunk" + bytes(500))
    _write(d / "e2.wav", b"")
    rows = [("good1", "train"), ("good2", "train"), ("e1", "eval"), ("e2", "eval")]
    pd.DataFrame([dict(track_id=t, path=f"{t}.wav", genre="g", split=s) for t, s in rows]).to_csv(
        tmp_path / "m.csv", index=False
    )
    params = {"kind": "audio_folder", "audio_folder": {"manifest": str(tmp_path / "m.csv"), "root": str(d)}, "sr": SR}
    out, dropped = tmp_path / "manifest.csv", tmp_path / "dropped.csv"
    argv = ["audio-import", "--params", json.dumps(params), "--out", str(out), "--out-dropped", str(dropped)]
    msg = _raises(lambda: main(argv))
    assert not out.exists()
    table = pd.read_csv(dropped)
    assert table["track_id"].tolist() == ["e1", "e2"] and set(table["split"]) == {"eval"}
    assert table["reason"].str.startswith("unreadable").all()
    return msg


CASES = {
    "corrupt audio": corrupt_audio,
    "empty audio (0 bytes)": empty_audio,
    "silent audio": silent_audio,
    "truncated WAV": truncated_wav,
    "truncated OGG (download cut short)": truncated_ogg,
    "an HTML page saved as .mp3": html_saved_as_mp3,
    "audio clip shorter than 1 s": audio_too_short,
    "empty MIDI": empty_midi,
    "MIDI with only drums": drums_only_midi,
    "several corrupt MIDI files": several_corrupt_midi,
    "MIDI file of 0 bytes": zero_byte_midi,
    "manifest names a missing file": manifest_missing_file,
    "duplicate track ids": manifest_duplicate_ids,
    "split other than train/eval": manifest_bad_split,
    "NaN or Inf scores": nan_scores,
    "NaN in a .npy given to `aria diagnose`": nan_in_npy_diagnose,
    "NaN in a CSV matrix": nan_in_csv,
    "text in a CSV matrix": text_in_csv,
    "score matrix file of 0 bytes": zero_byte_matrix,
    "truncated .npy (copy cut short)": truncated_npy,
    "ids that do not match the matrix": ids_not_matching,
    "score matrix of the wrong orientation": wrong_orientation,
    "config typo": config_typo,
    "config value out of range": config_out_of_range,
    "corpus too small for K = 50": corpus_too_small_for_k,
    "audio manifest with fewer training tracks than K": manifest_smaller_than_k,
    "missing HF cache (CLAP, MERT)": missing_hf_cache,
    "checkpoint of the wrong architecture": wrong_architecture_checkpoint,
    "audio-only config without an audio section": audio_only_without_audio,
    "one query in the pool": one_query_in_the_pool,
    "every eval track unreadable": every_eval_track_unreadable,
}


def test_readme_table_and_cases_agree():
    rows = readme_rows()
    assert len(rows) >= 15
    assert set(rows) == set(CASES), (sorted(set(rows) - set(CASES)), sorted(set(CASES) - set(rows)))


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_gives_the_readme_message(kind, tmp_path, capsys, monkeypatch):
    fn = CASES[kind]
    msg = fn(tmp_path, capsys, monkeypatch) if "monkeypatch" in fn.__code__.co_varnames else fn(tmp_path, capsys)
    expected = readme_rows()[kind]
    flat = " ".join(msg.split())  # README's table is one line per message
    pattern = ".*?".join(re.escape(" ".join(part.split())) for part in re.split(r"<[^<>]*>", expected))
    assert re.search(pattern, flat), f"{kind}:\n  README: {expected}\n  got:    {flat}"
