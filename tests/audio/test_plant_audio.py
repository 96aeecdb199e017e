"""Planted audio queries (`aria audio-planted-queries`, aria.audio.plant): the full copy is the
training recording's opening, sample for sample, and each stage's query is the training track's
first window; an aspect copy is the symbolic plant rendered with the host's instrument; `aria
planted` on a track-level matrix ranks the source track among the rows, with the audio channels."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aria.audio.corpus import select_excerpt
from aria.audio.render import render_midi
from aria.audio.stages import AudioVocab
from aria.cli import main
from aria.io.audio import load_audio, write_wav
from aria.io.midi import write_midi
from aria.io.tables import read_npz
from aria.symbolic.plant import plant, plant_assignments

sys.path.insert(0, str(Path(__file__).parents[1] / "symbolic"))
from test_plant import _piece  # noqa: E402

SR = 22050
WINDOWS = {"semantic": 4.0, "coarse": 2.0, "fine": 1.0}
TOK = {"semantic": {"n_codes": 8, "hop_s": 0.1}, "acoustic": {"n_codes": 8, "hop_length": 1764}}
TOK["cond"] = {"n_cond": 2, "cond_size": 4}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Five rendered pieces (three train, two eval) with their MIDI, tokenized by aria audio-tokenize."""
    d = tmp_path_factory.mktemp("planted_audio")
    (d / "audio").mkdir()
    audio_rows, midi_rows = ["track_id,path,genre,split,programs"], ["track_id,path,genre,split"]
    for i in range(5):
        tid, split = f"t{i}", "train" if i < 3 else "eval"
        notes = _piece(700 + i, n_onsets=40, step=0.25)
        write_midi(d / f"{tid}.mid", notes)
        prog = [0, 40, 73, 24, 56][i]
        y = render_midi(select_excerpt(notes, duration_s=6.0), programs={0: prog}, sr=SR, duration_s=6.0)
        write_wav(d / "audio" / f"{tid}.wav", y, SR)
        audio_rows.append(f"{tid},audio/{tid}.wav,folk,{split},{prog}")
        midi_rows.append(f"{tid},{tid}.mid,folk,{split}")
    (d / "audio.csv").write_text("\n".join(audio_rows) + "\n")
    (d / "midi.csv").write_text("\n".join(midi_rows) + "\n")
    tp = {"seed": 1, "root": str(d), "sr": SR, **TOK}
    argv = ["audio-tokenize", "--manifest", str(d / "audio.csv"), "--params", json.dumps(tp)]
    assert main([*argv, "--out", str(d / "tokens.npz"), "--out-tokenizers", str(d / "tokenizers.npz")]) == 0
    params = {"seed": 5, "root": str(d), "midi_root": str(d), "sr": SR, "windows": WINDOWS, **TOK}
    params["planted"] = {"n_sources": 2, "aspects": ["full", "rhythm", "harmony"], "ks": [1]}
    argv = ["audio-planted-queries", "--manifest", str(d / "audio.csv"), "--midi-manifest", str(d / "midi.csv")]
    argv += ["--tokens", str(d / "tokens.npz"), "--tokenizers", str(d / "tokenizers.npz")]
    argv += ["--params", json.dumps(params)]
    assert main([*argv, "--out-dir", str(d / "queries"), "--out-audio", str(d / "queries" / "audio")]) == 0
    return d, params


def test_full_copy_is_the_training_recording_and_its_first_window(corpus):
    d, params = corpus
    q = read_npz(d / "queries" / "semantic" / "queries.npz")
    assert list(q["aspects"]) == ["full", "rhythm", "harmony"] * 2
    assert set(q["source_tracks"]) <= {"t0", "t1", "t2"} and set(q["track_ids"]) <= {"t3", "t4"}
    tok = read_npz(d / "tokens.npz")
    n = int(WINDOWS["semantic"] * SR)
    for i in np.flatnonzero(q["aspects"] == "full"):
        src, qid = str(q["source_tracks"][i]), str(q["query_ids"][i])
        y_q = load_audio(d / "queries" / "audio" / f"{qid}.wav", sr=SR)
        y_t = load_audio(d / "audio" / f"{src}.wav", sr=SR)
        assert len(y_q) == n
        np.testing.assert_allclose(y_q, y_t[:n], atol=2 / 32768)  # 16-bit PCM both times
        # its semantic block: the training track's own tokens over the window (encoded on the
        # whole track there), up to the frames whose analysis window reaches past the query's end
        j = list(tok["track_ids"]).index(src)
        sem_t = tok["sem"][tok["sem_offsets"][j] : tok["sem_offsets"][j + 1]]
        ids = q["tokens"][i][q["loss_mask"][i]]
        n_sem = int(round(WINDOWS["semantic"] / TOK["semantic"]["hop_s"]))
        assert len(ids) == n_sem
        vocab = AudioVocab.from_config(TOK, sr=SR, windows=WINDOWS)
        np.testing.assert_array_equal(ids[: n_sem - 3] - vocab.sem_offset, sem_t[: n_sem - 3])
        # every stage's query is the training segment of window 0 (aria audio-segments builds it
        # the same way): the conditioning codes exactly (the training track's, from the whole
        # recording), the rest up to the frames at the window's end
        for stage in WINDOWS:
            qs = read_npz(d / "queries" / stage / "queries.npz")
            ref, _, _ = vocab.stage_sequence(
                stage,
                cond=tok["cond"][j],
                sem=sem_t,
                codes=tok["codes"][tok["code_offsets"][j] : tok["code_offsets"][j + 1]],
                t0=0.0,
            )
            n_cond = TOK["cond"]["n_cond"]
            np.testing.assert_array_equal(qs["tokens"][i][:n_cond], ref[:n_cond])
            assert np.mean(qs["tokens"][i] == ref) >= 0.95, stage


def test_aspect_copy_is_the_symbolic_plant_on_the_host_instrument(corpus):
    d, params = corpus
    q = read_npz(d / "queries" / "coarse" / "queries.npz")
    plan = plant_assignments(["t0", "t1", "t2"], ["t3", "t4"], 2, ["full", "rhythm", "harmony"], params["seed"])
    assert [f"p-{a}-{s}" for s, a, _, _ in plan] == list(q["query_ids"])
    assert [h for _, _, h, _ in plan] == list(q["track_ids"])
    from aria.io.midi import read_midi

    s, a, h, seed = next(x for x in plan if x[1] == "harmony")
    w = WINDOWS["semantic"]
    notes = plant(
        select_excerpt(read_midi(d / f"{s}.mid")[0], duration_s=w),
        select_excerpt(read_midi(d / f"{h}.mid")[0], duration_s=w),
        a,
        random_state=seed,
    )
    program = {"t3": 24, "t4": 56}[h]
    ref = render_midi(select_excerpt(notes, duration_s=w), programs={0: program}, sr=SR, duration_s=w)
    got = load_audio(d / "queries" / "audio" / f"p-{a}-{s}.wav", sr=SR)
    np.testing.assert_allclose(got, ref, atol=2 / 32768)


def test_planted_on_a_track_level_matrix_with_the_audio_channels(tmp_path):
    """`aria planted` without --segments: the rows are tracks, a query's source is one row; the
    planted channel is the audio one (rhythm -> rhythmic, harmony -> harmonic, melody: none)."""
    from aria.evaluation.planted import planted_retrieval
    from aria.io.stores import ScoreWriter
    from aria.io.tables import write_npz

    tracks = [f"t{i}" for i in range(6)]
    qids = ["p-full-t1", "p-rhythm-t4", "p-harmony-t0", "p-melody-t2"]
    src = ["t1", "t4", "t0", "t2"]
    write_npz(
        tmp_path / "q.npz",
        query_ids=np.array(qids),
        source_tracks=np.array(src),
        aspects=np.array([q.split("-")[1] for q in qids]),
    )
    S = np.random.default_rng(1).normal(size=(6, 4))
    S[1, 0] = 9.0  # the full copy's source first
    with ScoreWriter(tmp_path / "s.zarr", tracks, qids, attrs={"method": "m"}, row_dim="track") as w:
        w.write(0, S)
    z = {"rhythmic": [0.0, 2.0, 0.1, 1.0], "harmonic": [0.0, 1.0, 0.5, 3.0], "timbral": [0.0, 0.5, 0.2, 0.0]}
    (tmp_path / "h.json").write_text(json.dumps({"query_ids": qids, "by_k": {"5": {"z_c": z}}}))
    argv = ["planted", "--scores", str(tmp_path / "s.zarr"), "--queries", str(tmp_path / "q.npz")]
    argv += ["--homogeneity", str(tmp_path / "h.json"), "--out", str(tmp_path / "p.json")]
    params = {"ks": [1, 3], "main_k": 5, "domain": "audio"}
    assert main([*argv, "--params", json.dumps(params)]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    ref = planted_retrieval(S, [[tracks.index(t)] for t in src], ks=(1, 3))
    assert doc["per_query"]["rank"] == ref["rank"].tolist() and doc["per_query"]["rank"][0] == 1
    assert doc["all"]["precision"]["3"] == pytest.approx(ref["mean_precision"][3])
    # rhythm query: rhythmic 2.0 is the largest -> 1; harmony query: harmonic 0.5 above 0.2 and 0.1 -> 1
    assert doc["per_query"]["channel_rank"] == [None, 1.0, 1.0, None]
    # a matrix whose rows do not hold a source track is refused, naming it
    with ScoreWriter(
        tmp_path / "s2.zarr", [t.upper() for t in tracks], qids, attrs={"method": "m"}, row_dim="track"
    ) as w:
        w.write(0, S)
    bad = [x if x != str(tmp_path / "s.zarr") else str(tmp_path / "s2.zarr") for x in argv]
    with pytest.raises(
        ValueError, match=r"s2.zarr: planted source tracks \['t0', 't1', 't2', 't4'\] are not among its rows"
    ):
        main([*bad, "--params", json.dumps(params)])
