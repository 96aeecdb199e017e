"""`aria symbolic-planted-queries` and `aria planted`: the thin commands of the planted benchmark,
checked against the library called directly and hand-made truth."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aria.cli import main
from aria.evaluation.planted import planted_retrieval
from aria.io.midi import write_midi
from aria.io.stores import ScoreWriter
from aria.io.tables import read_npz, write_npz
from aria.symbolic.tokenize import encode, split_blocks

sys.path.insert(0, str(Path(__file__).parents[1] / "symbolic"))
from test_plant import _piece  # noqa: E402


def _train_npz(path, n_tracks=6, block=64):
    streams = [encode(_piece(500 + i, n_onsets=70)) for i in range(n_tracks)]
    tracks = [f"tr{i}" for i in range(n_tracks)]
    seg_ids, seg_tracks, toks = [], [], []
    for t, s in zip(tracks, streams):
        blocks, _, _ = split_blocks(s, block=block)
        for b in range(len(blocks)):
            seg_ids.append(f"{t}:{b:03d}")
            seg_tracks.append(t)
            toks.append(blocks[b])
    offs = np.cumsum([0] + [len(s) for s in streams])
    write_npz(
        path,
        tokens=np.array(toks),
        segment_ids=np.array(seg_ids),
        track_ids=np.array(seg_tracks),
        streams=np.concatenate(streams),
        stream_offsets=offs,
        stream_tracks=np.array(tracks),
    )
    return np.array(seg_ids), np.array(seg_tracks), dict(zip(tracks, streams))


def test_planted_queries_command_plants_the_sources_on_the_eval_pieces(tmp_path):
    _, _, streams = _train_npz(tmp_path / "train.npz")
    rows = ["track_id,path,genre,split"]
    for i in range(3):
        write_midi(tmp_path / f"e{i}.mid", _piece(600 + i, n_onsets=50, step=0.25))
        rows.append(f"e{i},e{i}.mid,folk,eval")
    rows += [f"tr{i},train.mid,folk,train" for i in range(6)]  # the manifest checks it exists; not read
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    write_midi(tmp_path / "train.mid", _piece(1))
    params = {"seed": 3, "block_tokens": 64, "planted": {"n_sources": 2, "aspects": ["full", "harmony"]}}
    argv = ["symbolic-planted-queries", "--segments", str(tmp_path / "train.npz"), "--manifest"]
    argv += [str(tmp_path / "manifest.csv"), "--params", json.dumps(params)]
    assert main([*argv, "--out", str(tmp_path / "q.npz"), "--out-midi", str(tmp_path / "midi")]) == 0
    q = read_npz(tmp_path / "q.npz")
    assert q["tokens"].shape == (4, 64) and list(q["aspects"]) == ["full", "harmony"] * 2
    assert set(q["track_ids"]) <= {"e0", "e1", "e2"} and set(q["source_tracks"]) <= set(streams)
    for i in np.flatnonzero(q["aspects"] == "full"):
        n = int(q["mask"][i].sum())
        np.testing.assert_array_equal(q["tokens"][i, :n], streams[q["source_tracks"][i]][:n])
    assert sorted(p.name for p in (tmp_path / "midi").iterdir()) == sorted(f"{x}.mid" for x in q["query_ids"])


def test_planted_command_scores_the_sources_and_the_channel(tmp_path):
    seg_ids, seg_tracks, _ = _train_npz(tmp_path / "train.npz")
    N = len(seg_ids)
    qids = ["p-full-tr1", "p-melody-tr4", "p-rhythm-tr0"]
    write_npz(
        tmp_path / "q.npz",
        query_ids=np.array(qids),
        source_tracks=np.array(["tr1", "tr4", "tr0"]),
        aspects=np.array(["full", "melody", "rhythm"]),
    )
    S = np.random.default_rng(0).normal(size=(N, 3))
    S[np.flatnonzero(seg_tracks == "tr1")[0], 0] = 10.0  # the full copy's source segment first
    with ScoreWriter(tmp_path / "s.zarr", seg_ids, qids, attrs={"method": "m"}) as w:
        w.write(0, S)
    z = {"melody": [0.0, 2.0, 0.5], "harmony": [1.0, 1.0, 0.0], "rhythm": [0.0, 3.0, 1.5]}
    (tmp_path / "h.json").write_text(json.dumps({"query_ids": qids, "by_k": {"10": {"z_c": z}}}))
    argv = ["planted", "--scores", str(tmp_path / "s.zarr"), "--queries", str(tmp_path / "q.npz")]
    argv += ["--segments", str(tmp_path / "train.npz"), "--homogeneity", str(tmp_path / "h.json")]
    argv += ["--params", json.dumps({"ks": [1, 3], "main_k": 10}), "--out", str(tmp_path / "p.json")]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    ref = planted_retrieval(S, [np.flatnonzero(seg_tracks == t) for t in ("tr1", "tr4", "tr0")], ks=(1, 3))
    assert doc["per_query"]["rank"][0] == 1 and doc["per_query"]["rank"] == ref["rank"].tolist()
    assert doc["all"]["mrr"] == pytest.approx(ref["mrr"])
    assert doc["all"]["precision"]["3"] == pytest.approx(ref["mean_precision"][3])
    # melody query: rhythm (3.0) above melody (2.0) -> rank 2; rhythm query: rhythm largest -> 1
    assert doc["per_query"]["channel_rank"] == [None, 2.0, 1.0]
    assert doc["by_aspect"]["rhythm"]["channel_first"] == 1.0 and doc["by_aspect"]["melody"]["channel_first"] == 0.0
    # queries that are not the homogeneity's are refused, naming the file
    (tmp_path / "h2.json").write_text(json.dumps({"query_ids": qids[::-1], "by_k": {"10": {"z_c": z}}}))
    bad = [x if x != str(tmp_path / "h.json") else str(tmp_path / "h2.json") for x in argv]
    with pytest.raises(ValueError, match="h2.json: its queries are not"):
        main(bad)
    # so is a score store whose columns are another run's queries
    with ScoreWriter(tmp_path / "s2.zarr", seg_ids, qids[::-1], attrs={"method": "m"}) as w:
        w.write(0, S)
    bad = [x if x != str(tmp_path / "s.zarr") else str(tmp_path / "s2.zarr") for x in argv]
    with pytest.raises(ValueError, match="s2.zarr: its own column ids differ"):
        main(bad)


def test_compose_planted_tables_and_summary():
    """compose() with planted documents: a retrieval table per method and aspect, and Kendall tau
    of each measure's order against the MRR order and the P@K order, equal to scipy's on the same
    numbers; with LDS in the same run, the validation table puts tau against planted P@K next to
    tau against LDS."""
    from scipy import stats
    from test_lds_ceiling import report_diag, report_hom

    from aria.report.compose import compose

    def pdoc(mrr, ch, p1):
        blk = {"n": 2, "mrr": mrr, "precision": {"1": p1, "5": mrr / 4}, "recall": {"1": 0.1, "5": 0.2}}
        asp = {
            "full": {**blk, "channel_rank": None, "channel_first": None},
            "melody": {**blk, "channel_rank": 2.0, "channel_first": ch},
        }
        return {"ks": [1, 5], "main_k": 5, "all": blk, "by_aspect": asp}

    keys = ["trak", "tracin", "gradcos"]
    r1 = {"trak": 0.1, "tracin": 0.4, "gradcos": 0.2}
    mrr = {"trak": 0.3, "tracin": 0.5, "gradcos": 0.1}
    p1 = {"trak": 0.3, "tracin": 0.1, "gradcos": 0.2}  # another order than MRR's
    lds = {"trak": 0.2, "tracin": 0.3, "gradcos": 0.1}
    planted = {k: pdoc(mrr[k], 0.5, p1[k]) for k in keys}
    _, md, summary = compose(
        keys,
        [report_diag(r1[k], r1[k], 0.5) for k in keys],
        [report_hom(0.1) for _ in keys],
        experiment="t",
        main_k=5,
        planted=planted,
        lds={k: {"lds": v, "ci": [v - 0.05, v + 0.05], "halves": [v, v], "n_subsets": 8} for k, v in lds.items()},
    )
    p = summary["planted"]
    assert p["mrr_order"] == ["tracin", "trak", "gradcos"]
    # lower r1 first against higher MRR first: scipy's tau-b of (-r1, mrr)
    ref = stats.kendalltau([-r1[k] for k in keys], [mrr[k] for k in keys]).statistic
    assert p["by_measure"]["r1"]["kendall_tau"] == pytest.approx(ref)
    # precision at the smallest K (P@1): every source can fill it
    ref_p = stats.kendalltau([-r1[k] for k in keys], [p1[k] for k in keys]).statistic
    assert p["precision_order"] == ["trak", "gradcos", "tracin"] and p["precision_k"] == 1
    assert p["by_measure_precision"]["r1"]["kendall_tau"] == pytest.approx(ref_p)
    assert "| TracIn | 0.500 | 0.100 | 0.125 | 0.200 | 0.500 | 0.500 | 50% |" in md
    assert f"| r₁ | {ref:+.2f} | no | {ref_p:+.2f} |" in md
    # the validation table: tau of r1 against LDS, then against planted P@1, from scipy
    val = summary["validation"]["symbolic"]
    ref_l = stats.kendalltau([-r1[k] for k in keys], [lds[k] for k in keys]).statistic
    assert val["planted"]["truth"] == "planted P@1" and val["planted"]["order"] == p["precision_order"]
    assert val["planted"]["by_measure"]["r1"] == pytest.approx(ref_p)
    assert "| Diagnostic | Kendall τ vs LDS order | Same order | Kendall τ vs planted P@1 order | τ vs r₁ |" in md
    assert f"| r₁ | {ref_l:+.2f} | no | {ref_p:+.2f} |" in md
