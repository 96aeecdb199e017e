"""LDS ground truth (docs/spec.md §9) against independent references: scipy's spearmanr and
kendalltau, a direct retrain and evaluation written out here, and planted cases."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from aria.evaluation.lds import (
    bootstrap_interval,
    halves_agreement,
    lds_per_query,
    lds_summary,
    order_agreement,
    predicted_targets,
    subset_mask,
    subset_masks,
)
from aria.io.stores import iter_row_chunks, read_ground_truth
from aria.io.tables import write_npz


def test_subsets_are_fixed_size_seeded_and_independent_of_their_number():
    m10 = subset_masks(50, 10, alpha=0.3, random_state=4)
    assert m10.shape == (10, 50)
    assert (m10.sum(1) == 15).all()
    np.testing.assert_array_equal(subset_masks(50, 4, alpha=0.3, random_state=4), m10[:4])
    np.testing.assert_array_equal(subset_mask(50, 7, alpha=0.3, random_state=4), m10[7])
    assert not np.array_equal(subset_masks(50, 4, alpha=0.3, random_state=5), m10[:4])
    assert len({r.tobytes() for r in m10}) == 10  # distinct subsets
    with pytest.raises(ValueError, match="alpha"):
        subset_mask(10, 0, alpha=1.0, random_state=0)


def test_lds_equals_scipy_spearman_and_is_one_for_an_exact_datamodel():
    """Targets that are exactly additive in the true scores: LDS ~ 1 for them, ~ 0 for
    random scores, -1 for the negated truth; every per-query value equals scipy's."""
    rng = np.random.default_rng(0)
    n, q, m = 80, 50, 40
    tau = rng.normal(size=(n, q))
    masks = subset_masks(n, m, alpha=0.5, random_state=1)
    targets = masks.astype(float) @ tau  # f_q(S) = sum_{j in S} tau(q, j)
    for S, expect in ((tau, 1.0), (-tau, -1.0)):
        G = predicted_targets(iter_row_chunks(S, rows=7), masks)  # streamed in uneven chunks
        np.testing.assert_allclose(G, masks @ S)
        res = lds_summary(G, targets, n_boot=200, random_state=0)
        assert res["lds"] == pytest.approx(expect, abs=1e-12)
    noise = rng.normal(size=(n, q))
    G = predicted_targets(iter_row_chunks(noise, rows=16), masks)
    per_q = lds_per_query(G, targets)
    ref = [stats.spearmanr(G[:, i], targets[:, i]).statistic for i in range(q)]
    np.testing.assert_allclose(per_q, ref, atol=1e-12)
    assert abs(np.mean(per_q)) < 0.1  # sd of the mean over 50 queries is ~0.023
    # partially informative scores land in between
    mix = lds_summary(predicted_targets(iter_row_chunks(tau + 2 * noise), masks), targets, random_state=0)
    assert 0.2 < mix["lds"] < 0.9 and mix["ci"][0] < mix["lds"] < mix["ci"][1]


def test_constant_columns_are_left_out_and_counted():
    rng = np.random.default_rng(1)
    G, T = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    G[:, 1] = 2.0
    res = lds_summary(G, T, n_boot=100)
    assert res["per_query"][1] is None and res["n_undefined"] == 1
    ref = np.mean([stats.spearmanr(G[:, i], T[:, i]).statistic for i in (0, 2)])
    assert res["lds"] == pytest.approx(ref)


def test_predicted_targets_rejects_a_row_count_mismatch():
    with pytest.raises(ValueError, match="5 rows"):
        predicted_targets(iter_row_chunks(np.ones((5, 2))), np.ones((3, 6), dtype=bool))


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    v = np.random.default_rng(2).normal(0.3, 0.2, size=200)
    lo, hi = bootstrap_interval(v, n_boot=2000, random_state=3)
    assert (lo, hi) == bootstrap_interval(v, n_boot=2000, random_state=3)
    assert lo < v.mean() < hi
    se = v.std(ddof=1) / np.sqrt(len(v))  # normal-theory half-width 1.96 se
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_order_agreement_against_scipy_kendalltau():
    diags = {
        "a": {"r1": 0.1, "r2_5": 0.3, "c_bar": 0.2, "rho_bar": 0.9},
        "b": {"r1": 0.2, "r2_5": 0.2, "c_bar": 0.4, "rho_bar": 0.5},
        "c": {"r1": 0.3, "r2_5": 0.1, "c_bar": 0.3, "rho_bar": 0.7},
    }
    lds = {"a": 0.5, "b": 0.3, "c": 0.1}
    res = order_agreement(diags, lds)
    assert res["lds_order"] == ["a", "b", "c"]
    r1 = res["by_diagnostic"]["r1"]
    assert r1["identical"] and r1["kendall_tau"] == pytest.approx(1.0)
    r25 = res["by_diagnostic"]["r2_5"]
    assert not r25["identical"] and r25["order"] == ["c", "b", "a"] and r25["kendall_tau"] == pytest.approx(-1.0)
    for k in ("c_bar", "rho_bar"):
        names = sorted(diags)
        ref = stats.kendalltau([diags[n][k] for n in names], [-lds[n] for n in names]).statistic
        assert res["by_diagnostic"][k]["kendall_tau"] == pytest.approx(ref)
    stab = halves_agreement({"a": [0.5, 0.4], "b": [0.3, 0.45], "c": [0.1, 0.0]})
    assert not stab["identical"] and stab["order_second_half"] == ["b", "a", "c"]
    assert stab["kendall_tau"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- retraining
def _tiny_data(n=24, q=4, length=12, vocab=11, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab, size=(n, length))
    qtok = rng.integers(1, vocab, size=(q, length))
    lm = np.zeros((q, length), dtype=bool)
    lm[:, 4:] = True  # only the continuation after a 4-token prompt counts, as for real queries
    return (
        {
            "tokens": tokens,
            "mask": np.ones_like(tokens, dtype=bool),
            "segment_ids": np.array([f"s{i}" for i in range(n)]),
        },
        {
            "tokens": qtok,
            "mask": np.ones_like(qtok, dtype=bool),
            "loss_mask": lm,
            "query_ids": np.array([f"q{i}" for i in range(q)]),
        },
    )


# the retrained model: the architecture (ModelConfig's keys) and the recipe `aria lds-retrain` takes
ARCH = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, vocab_size=11)
MODEL = dict(ARCH, block_tokens=12, epochs=3, batch_size=8, lr=0.01, seed=100)


def _direct_targets(train, queries, keep, seed, total_steps=None, init_state=None):
    """Retrain and evaluate without the code under test's target/loss helpers (the initial
    weights of ``init_state`` and the fused kernel: tests/models/test_model_train.py)."""
    from aria.models.training import train_model
    from aria.models.transformer import ModelConfig, MusicTransformer

    cfg = ModelConfig(**ARCH, max_len=MODEL["block_tokens"])
    res = train_model(
        train["tokens"][keep],
        train["mask"][keep],
        cfg=cfg,
        epochs=MODEL["epochs"],
        lr=MODEL["lr"],
        batch_size=MODEL["batch_size"],
        n_checkpoints=1,
        random_state=seed,
        total_steps=total_steps,
        init_state=init_state,
        fused=True,
    )
    model = MusicTransformer(cfg)
    model.load_state_dict(res["final"])
    model.eval()
    out = []
    with torch.no_grad():
        for t, lm in zip(queries["tokens"], queries["loss_mask"]):
            x = torch.as_tensor(t)[None]
            logp = F.log_softmax(model(x)[0, :-1], -1)
            nll = -logp[torch.arange(len(t) - 1), x[0, 1:]]
            w = torch.as_tensor(lm[1:], dtype=torch.float64)
            out.append(-float((nll.double() * w).sum() / w.sum()))
    return np.array(out)


@pytest.mark.parametrize("recipe, init", [("steps", "shared"), ("epochs", "fresh")])
def test_stored_targets_equal_a_direct_retrain(tmp_path, recipe, init):
    """`aria lds-retrain` + `aria lds-ground-truth` store f_q = -loss of the model retrained
    on exactly the stored subset, averaged over the runs; run r of subset m trains with seed
    base + m * R + r, recipe 'steps' takes member 0's epochs * ceil(N / batch) steps, and init
    'shared' starts every run from member 0's initial weights (seed member_seed)."""
    import math

    from aria.cli import main

    train, queries = _tiny_data()
    train["track_ids"] = np.array([f"t{i % 3}" for i in range(24)])
    queries["track_ids"] = np.array(["e0", "e1", "e1", "e9"])
    write_npz(tmp_path / "train.npz", **train)
    write_npz(tmp_path / "queries.npz", **queries)
    genre = {"t0": "folk", "t1": "folk", "t2": "chorale", "e0": "chorale", "e1": "folk"}  # e9: not listed
    man = "track_id,path,genre,split\n" + "".join(f"{t},{t}.mid,{g},train\n" for t, g in genre.items())
    (tmp_path / "manifest.csv").write_text(man)
    base, runs = 1100, 2
    parts = []
    params = dict(alpha=0.5, seed=9, runs=runs, recipe=recipe, init=init, base_seed=base, member_seed=100, model=MODEL)
    for s in range(3):
        out = tmp_path / f"s{s}.npz"
        argv = ["lds-retrain", "--segments", str(tmp_path / "train.npz"), "--queries", str(tmp_path / "queries.npz")]
        assert main([*argv, "--params", json.dumps({**params, "subset": s}), "--out", str(out)]) == 0
        parts.append(str(out))
    gt_path = tmp_path / "gt.zarr"
    assert (
        main(
            [
                "lds-ground-truth",
                "--subsets",
                *parts,
                "--params",
                json.dumps({"alpha": 0.5, "seed": 9, "recipe": recipe, "init": init}),  # as rules/lds.smk
                "--out",
                str(gt_path),
                "--segments",
                str(tmp_path / "train.npz"),
                "--queries",
                str(tmp_path / "queries.npz"),
                "--manifest",
                str(tmp_path / "manifest.csv"),
            ]
        )
        == 0
    )
    gt = read_ground_truth(gt_path)
    assert gt["masks"].shape == (3, 24) and gt["targets"].shape == (3, 4) and gt["target_runs"].shape == (3, 2, 4)
    assert list(gt["row_ids"]) == list(train["segment_ids"]) and list(gt["col_ids"]) == list(queries["query_ids"])
    # the collections come from the manifest through each segment's and query's source track
    assert gt["segment_collection"].tolist() == [genre[f"t{i % 3}"] for i in range(24)]
    assert gt["query_collection"].tolist() == ["chorale", "folk", "folk", "unknown"]
    # 24 segments, batch 8, 3 epochs: member 0 takes 9 steps; a 12-segment subset 2 per epoch
    steps = 3 * math.ceil(24 / 8) if recipe == "steps" else 3 * math.ceil(12 / 8)
    np.testing.assert_array_equal(gt["steps"], np.full((3, runs), steps))
    np.testing.assert_array_equal(gt["seeds"], [[base + s * runs + r for r in range(runs)] for s in range(3)])
    for s in range(3):
        keep = subset_mask(24, s, alpha=0.5, random_state=9)
        np.testing.assert_array_equal(gt["masks"][s], keep)
        total = steps if recipe == "steps" else None
        init_state = 100 if init == "shared" else None
        direct = np.stack(
            [_direct_targets(train, queries, keep, base + s * runs + r, total, init_state) for r in range(runs)]
        )
        np.testing.assert_allclose(gt["target_runs"][s], direct, rtol=1e-5)
        np.testing.assert_allclose(gt["targets"][s], direct.mean(0), rtol=1e-5)
    # a trained model fits its subset better than the segments it never saw
    assert (gt["train_loss"] < gt["heldout_loss"]).all()
    # the references: the same LDS function on the reference matrices, written out here
    ref_path = tmp_path / "references.json"
    argv = ["lds-references", "--ground-truth", str(gt_path), "--out", str(ref_path)]
    assert main([*argv, "--params", json.dumps({"n_boot": 100, "seed": 9, "stage": "symbolic"})]) == 0
    doc = json.loads(ref_path.read_text())
    assert doc["stage"] == "symbolic" and doc["runs"] == runs and doc["ceiling"]["available"]
    assert gt["attrs"]["init"] == init and doc["init"] == init
    assert (
        set(doc["references"]) == {"gaussian", "query_independent", "same_collection", "collection_prior"}
        and not doc["skipped"]
    )
    seg = np.array([genre[f"t{i % 3}"] for i in range(24)])
    same = (seg[:, None] == np.array(["chorale", "folk", "folk", "unknown"])[None, :]).astype(float)
    ref = np.nanmean(lds_per_query(gt["masks"] @ same, gt["targets"]))
    assert doc["references"]["same_collection"]["lds"] == pytest.approx(ref, abs=1e-12)
    # `aria lds` of a method: LDS, and the partial LDS controlling for the common component and
    # the genre mix ("share of folk"; its numbers: tests/evaluation/test_lds_ceiling.py)
    from aria.io.stores import ScoreWriter

    S = np.random.default_rng(1).normal(size=(24, 4))
    with ScoreWriter(tmp_path / "m.zarr", train["segment_ids"], queries["query_ids"], attrs={"method": "m"}) as w:
        w.write(0, S)
    out = tmp_path / "m.json"
    argv = ["lds", "--scores", str(tmp_path / "m.zarr"), "--ground-truth", str(gt_path), "--out", str(out)]
    assert main([*argv, "--params", json.dumps({"n_boot": 100, "seed": 9})]) == 0
    res = json.loads(out.read_text())
    assert res["partial_controls"] == ["common component", "share of folk"]
    assert res["lds"] == pytest.approx(np.nanmean(lds_per_query(gt["masks"] @ S, gt["targets"])), abs=1e-12)
    assert res["partial_lds"] is None or np.isnan(res["partial_lds"])  # 3 subsets: no residual degrees of freedom


def test_planted_duplicate_gets_a_positive_contribution():
    """Sign convention: a query that duplicates training segment j0 has a higher target
    (lower loss) when j0 is in the subset; a score matrix that credits j0 gets LDS > 0 for
    that query, the negated one LDS < 0."""
    from aria.evaluation.lds import counterfactual_targets
    from aria.models.transformer import ModelConfig

    train, _ = _tiny_data(n=16, q=1, seed=3)
    j0 = 5
    queries = {"tokens": train["tokens"][[j0]], "mask": train["mask"][[j0]]}
    masks = subset_masks(16, 12, alpha=0.5, random_state=2)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=12, vocab_size=11)
    T = np.stack(
        [
            counterfactual_targets(train, queries, keep, model_cfg=cfg, epochs=30, lr=0.01, batch_size=8, seeds=[1])[
                "targets"
            ]
            for keep in masks
        ]
    )
    with_j0, without = T[masks[:, j0], 0], T[~masks[:, j0], 0]
    assert with_j0.min() > without.max()  # memorised: including j0 always helps its duplicate
    S = np.zeros((16, 1))
    S[j0, 0] = 1.0
    assert lds_per_query(masks @ S, T)[0] > 0.8
    assert lds_per_query(masks @ -S, T)[0] < -0.8
