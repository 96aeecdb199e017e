"""Unlearning in the workflow (issue 11): the score store, the self-influence grid and the
comparison recomputed from the models and stores the tiny run wrote; the report rows; rerun scope."""

import json

import numpy as np
import pytest
import torch
from test_workflow import dry_run_jobs, tiny_config

from aria.io.stores import open_scores


def _stage_inputs(res, stage):
    from aria.io.checkpoints import load_model
    from aria.io.tables import load_torch, read_npz

    model, _ = load_model(res / "models" / stage / "m0.pt")
    fisher = load_torch(res / "unlearning" / stage / "fisher_full.pt")["fisher"]
    return (
        model,
        fisher,
        read_npz(res / "segments" / stage / "train.npz"),
        read_npz(res / "queries" / stage / "queries.npz"),
    )


@pytest.mark.parametrize("exp, stage", [("tiny", "symbolic"), ("tiny_audio", "fine")])
def test_unlearning_store_is_the_library_on_the_stage_model(tiny_run, exp, stage):
    """scores/<stage>/unlearning.zarr = τ of every training segment for every query, recomputed with
    the library from model 0, the stage's segments and queries (mixed masks, the config's η), and the
    cached Fisher = the mean of squared per-example gradients of the full training losses."""
    from aria.attribution.unlearning import at_precision, diagonal_fisher, token_batches, token_loss, unlearning_scores
    from aria.io.stores import store_attrs

    res = tiny_run / "results" / exp
    cfg = tiny_config()
    lr = (
        cfg["methods"]["unlearning"]["lr"]
        if exp == "tiny"
        else cfg["audio"]["stages"][stage]["methods"]["unlearning"]["lr"]
    )
    model, fisher, tr, qu = _stage_inputs(res, stage)
    ids = tr["segment_ids"]
    F = diagonal_fisher(
        model, token_batches(tr["tokens"], tr["mask"], tr.get("loss_mask"), ids=ids, use_mask=False), token_loss, seed=3
    )
    for n in F:
        torch.testing.assert_close(fisher[n], F[n], rtol=1e-5, atol=1e-12)
    S, rows, cols = open_scores(res / "scores" / stage / "unlearning.zarr")
    assert list(rows) == list(ids) and list(cols) == list(qu["query_ids"])
    model64 = at_precision(model, "float64")  # the reference: update and loss passes in float64
    taus = []
    for q in range(len(cols)):
        (query,) = token_batches(
            qu["tokens"][q : q + 1], qu["mask"][q : q + 1], qu["loss_mask"][q : q + 1], ids=cols[q : q + 1]
        )
        tau = unlearning_scores(
            model64,
            lambda: token_batches(tr["tokens"], tr["mask"], tr.get("loss_mask"), ids=ids, use_mask=False),
            query,
            token_loss,
            fisher,  # the job's own (F⁻¹ would pass the float32 round-off between two Fishers on to τ)
            lr=lr,
            seed=3,
        )
        # the job runs precision "mixed" (float32 hidden states, float64 output layer and softmax) and
        # the fused attention kernel; its promise is a round-off below 1% of τ's spread (measured 1e-5)
        np.testing.assert_allclose(S[:, q], tau, rtol=0, atol=1e-2 * np.std(tau))
        assert np.abs(tau).max() > 0  # the step moved the training losses
        taus.append(tau)
    # the store's round-off: the spread from its definition; the error measured on the first query of
    # each chunk is the difference of the stored τ from float64 τ there (the float32 storage and the
    # kernels add ~1e-4 of it in quadrature); float32 alone would be 100x worse
    num = store_attrs(res / "scores" / stage / "unlearning.zarr")["numerics"]
    T = np.stack(taus, axis=1)
    # |sd(S) - sd(T)| <= rms(S - T) (triangle inequality), below 1e-3 of the spread as asserted next
    assert num["spread"] == pytest.approx(np.sqrt(np.mean([np.var(T[:, j]) for j in range(T.shape[1])])), rel=1e-3)
    n_chunks = cfg["methods"]["unlearning"]["chunks"] if exp == "tiny" else 1
    first = [int(c[0]) for c in np.array_split(np.arange(len(cols)), n_chunks)]
    assert num["precision"] == "mixed" and num["n_checked"] == n_chunks
    assert num["error"] == pytest.approx(np.sqrt(np.mean((S[:, first] - T[:, first]) ** 2)), rel=1e-2)
    assert num["ok"] and num["ratio"] < 1e-3 and num["float32_error"] > 10 * num["error"]
    assert len(list((res / "unlearning" / stage / "chunks").glob("q*.npz"))) == n_chunks


@pytest.mark.parametrize("exp, stage", [("tiny", "symbolic"), ("tiny_audio", "fine")])
def test_selfinfluence_point_is_recomputed(tiny_run, exp, stage):
    """One grid point: the targets (k-means on θ₀'s embeddings, seeded), their ranks, τ and the
    Fréchet distance recomputed with the library; the first target's τ also from an explicit
    unlearning step on its own batch (the fine stage's loss covers only its target block)."""
    from aria.attribution.unlearning import (
        model_embeddings,
        precision_setup,
        self_influence,
        token_batches,
        unlearning_scores,
    )
    from aria.evaluation.selfinfluence import diverse_targets, target_rank
    from aria.models.transformer import fused_attention

    res = tiny_run / "results" / exp
    model, fisher, tr, qu = _stage_inputs(res, stage)
    model, loss = precision_setup(model, "mixed")  # the jobs' default precision
    doc = json.loads((res / "unlearning" / stage / "selfinfluence" / "lr1e-07_steps1_all_none.json").read_text())
    assert doc["point"] == {"lr": 1e-7, "steps": 1, "group": "all", "mask": "none"} and not doc["chosen"]
    E = model_embeddings(model, tr["tokens"], tr["mask"])
    targets = diverse_targets(E, 3, random_state=3)
    ids = tr["segment_ids"]
    with fused_attention(model):  # the job's kernel
        assert doc["targets"] == [str(ids[t]) for t in targets]
        ref = self_influence(
            model,
            tr,
            fisher,
            targets,
            lr=1e-7,
            mask="none",
            top_k=5,
            prompts={"tokens": qu["tokens"][:2], "loss_mask": qu["loss_mask"][:2]},
            seed=3,
            loss_fn=loss,
        )
        assert doc["rank"] == ref["rank"]
        # mixed precision: the gradients are float32 sums, whose order follows the torch threads (the
        # job ran on one, this process on the machine's), ~sqrt(n) u32 ~ 1e-6 relative in g and,
        # tau being quadratic in g to first order, 2e-6 in tau (1.2e-6 seen on a 2-core EPYC); 10x that
        np.testing.assert_allclose(doc["tau_target"], ref["tau_target"], rtol=2e-5)
        assert doc["frechet"] == pytest.approx(ref["frechet"], rel=1e-6, abs=1e-12)
        assert doc["median_rank"] == np.median(ref["rank"]) and doc["top_k"] == 5

        t, lm = targets[0], tr.get("loss_mask")
        (query,) = token_batches(
            tr["tokens"][t : t + 1],
            tr["mask"][t : t + 1],
            None if lm is None else lm[t : t + 1],
            ids=ids[t : t + 1],
            use_mask=False,  # strategy "none": no M_U either
        )
        tau = unlearning_scores(
            model,
            lambda: token_batches(tr["tokens"], tr["mask"], lm, ids=ids, use_mask=False),
            query,
            loss,
            fisher,
            lr=1e-7,
            seed=3,
        )
        assert doc["tau_target"][0] == pytest.approx(tau[t], rel=2e-5)  # as above
        # the first target's τ was scored in float64 and float32 too: at this point's η = 1e-7 float32
        # alone would be ~1% of τ's spread (measured 1.2-1.3%), mixed ~1e-4 of it
        num = doc["numerics"]
        assert num["precision"] == "mixed" and num["n_checked"] == 1 and num["ok"]
        assert num["spread"] == pytest.approx(np.std(tau), rel=2e-5)  # the tau tolerance above
        assert num["ratio"] < 1e-3 and num["float32_ratio"] > 10 * num["ratio"]
        assert doc["rank"][0] == target_rank(tau, t)


@pytest.mark.parametrize("exp, stage, other", [("tiny", "symbolic", "trak"), ("tiny_audio", "fine", "aisfx")])
def test_unlearning_comparison_matches_the_stores(tiny_run, exp, stage, other):
    """compare.json = profiles and Pearson r recomputed from the stores: symbolic, segment level against
    another method; audio, τ averaged over each track's segments against an embedding baseline's."""
    from aria.evaluation.selfinfluence import pearson_per_query, sorted_profiles
    from aria.io.tables import read_npz

    res = tiny_run / "results" / exp
    doc = json.loads((res / "unlearning" / "compare.json").read_text())
    c = next(x for x in doc["comparisons"] if x["stage"] == stage and x["other"].partition("/")[0] == other)
    if exp == "tiny":
        U, urows, _ = open_scores(res / "scores" / stage / "unlearning.zarr")
        S, srows, _ = open_scores(res / "scores" / stage / f"{other}.zarr")
    else:
        # the raw τ of every segment, averaged over each track's segments by hand
        Useg, segrows, _ = open_scores(res / "scores" / stage / "unlearning.zarr")
        tracks = dict(zip(*[read_npz(res / "segments" / stage / "train.npz")[k] for k in ("segment_ids", "track_ids")]))
        urows = list(dict.fromkeys(tracks[r] for r in segrows))
        Useg = np.asarray(Useg[:], dtype=np.float64)
        U = np.stack([Useg[[tracks[r] == t for r in segrows]].mean(0) for t in urows])
        S, srows, _ = open_scores(res / "scores" / "baseline" / f"{other}.zarr")
    U = np.asarray(U[:], dtype=np.float64)
    S = np.asarray(S[:], dtype=np.float64)[[list(srows).index(r) for r in urows]]
    m, sd = sorted_profiles(U, S, how="minmax")
    np.testing.assert_allclose(c["profiles"]["minmax"]["other"]["mean"], m, atol=1e-9)
    np.testing.assert_allclose(c["profiles"]["minmax"]["other"]["std"], sd, atol=1e-6)
    r = pearson_per_query(U, S)
    np.testing.assert_allclose([np.nan if x is None else x for x in c["pearson"]], r, atol=1e-9)
    # the audio stages that run unlearning are compared with both averaging modes of every baseline
    if exp == "tiny_audio":
        assert {x["other"] for x in doc["comparisons"] if x["stage"] == stage} == {
            "aisfx/baseline",
            "aisfx_aaa/baseline",
        }


def test_reports_carry_unlearning(tiny_run):
    """Both reports: the unlearning rows (with the LDS column where the stage has ground truth), the
    self-influence grid with exactly one chosen point per stage, the comparison; summary.json too."""
    for exp, key, stage in (("tiny", "unlearning", "symbolic"), ("tiny_audio", "unlearning/fine", "fine")):
        res = tiny_run / "results" / exp
        summary = json.loads((res / "summary.json").read_text())
        assert key in summary["methods"]
        grid = [p for p in summary["unlearning"]["selfinfluence"] if p["stage"] == stage]
        assert len(grid) == 3 and sum(p["chosen"] for p in grid) == 1  # lr 1e-7 × {mixed, none} + chosen
        chosen = next(p for p in grid if p["chosen"])
        assert chosen["point"] == {"lr": 1e-6, "steps": 1, "group": "all", "mask": "mixed"}
        for p in grid:
            d = json.loads(
                (
                    res
                    / "unlearning"
                    / stage
                    / "selfinfluence"
                    / f"lr{p['point']['lr']:g}_steps1_all_{p['point']['mask']}.json"
                ).read_text()
            )
            assert p["median_rank"] == d["median_rank"] and p["share_rank1"] == d["share_rank1"]
        assert summary["unlearning"]["compare"]
        html = (res / "report.html").read_text()
        for title in (
            "Unlearning: train-to-train self-influence grid",
            "Unlearning against the other attributions (test-to-train)",
            "the unlearning rows use lr 1e-06, 1 step, all, mask mixed",
        ):
            assert title in html
        assert "cost" in summary["methods"][key]
    assert "lds" in json.loads((tiny_run / "results" / "tiny" / "summary.json").read_text())["methods"]["unlearning"]


def test_rerun_scope_unlearning(tiny_run):
    """A new η reruns that stage's query chunks, what reads the scores and the new chosen grid point;
    never the Fisher, training or another method. A new grid setting runs only its own jobs."""
    cfg = tiny_config()
    cfg["methods"]["unlearning"]["lr"] = 2e-6
    jobs = dry_run_jobs(tiny_run, cfg)
    rules = {r for r, _ in jobs}
    assert rules == {
        "unlearning_chunk",
        "unlearning_merge",
        "replica_unlearning_chunk",  # its noise diagnostic: member 1 at the new eta (never its Fisher)
        "replica_unlearning_merge",
        "unlearning_selfinfluence",
        "diagnostics",
        "homogeneity",
        "residual",
        "lds",
        "unlearning_compare",
        "cards",
        "report",
    }
    assert ("unlearning_selfinfluence", "exp=tiny, stage=symbolic, point=lr2e-06_steps1_all_mixed") in jobs
    assert not any("tiny_audio" in w for _, w in jobs)  # nothing of the audio experiment
    cfg = tiny_config()
    cfg["selfinfluence"]["grid"]["lr"] = [1e-7, 1e-4]
    jobs = dry_run_jobs(tiny_run, cfg)
    assert {r for r, _ in jobs} == {"unlearning_selfinfluence", "report"}
    assert {w for r, w in jobs if r == "report"} == {"exp=tiny", "exp=tiny_audio"}
