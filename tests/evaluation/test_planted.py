"""planted_retrieval against a brute-force ranking by numpy's stable argsort."""

import numpy as np
import pytest

from aria.evaluation.planted import planted_retrieval


def _brute(S, sources, ks):
    N, Q = S.shape
    rank, prec, rec = [], {k: [] for k in ks}, {k: [] for k in ks}
    for q in range(Q):
        order = np.argsort(-S[:, q], kind="stable")  # higher first, ties: lower row first
        pos = {int(r): i for i, r in enumerate(order)}
        rank.append(min(pos[int(r)] for r in sources[q]) + 1)
        for k in ks:
            hits = len(set(order[:k].tolist()) & set(int(r) for r in sources[q]))
            prec[k].append(hits / k)
            rec[k].append(hits / len(set(int(r) for r in sources[q])))
    return np.array(rank), prec, rec


@pytest.mark.parametrize("row_chunk", [7, 1000])
def test_matches_a_brute_force_ranking_with_ties(row_chunk):
    rng = np.random.default_rng(0)
    N, Q = 60, 9
    S = rng.normal(size=(N, Q)).round(1)  # rounding makes ties
    S[:, 3] = 0.0  # a constant column: every row ties, the lowest source row decides
    sources = [rng.choice(N, size=rng.integers(1, 5), replace=False) for _ in range(Q)]
    sources[0] = np.array([int(np.argmax(S[:, 0]))])  # the exact copy ranked first
    ks = (1, 5, 10)
    got = planted_retrieval(S, sources, ks=ks, row_chunk=row_chunk)
    rank, prec, rec = _brute(S, sources, ks)
    np.testing.assert_array_equal(got["rank"], rank)
    assert got["rank"][0] == 1 and got["rank"][3] == min(sources[3]) + 1
    assert got["mrr"] == pytest.approx(np.mean(1.0 / rank))
    for k in ks:
        np.testing.assert_allclose(got["precision"][k], prec[k])
        np.testing.assert_allclose(got["recall"][k], rec[k])
        assert got["mean_precision"][k] == pytest.approx(np.mean(prec[k]))


def test_reads_a_score_store_chunk_by_chunk(tmp_path):
    from aria.io.stores import ScoreWriter

    rng = np.random.default_rng(1)
    S = rng.normal(size=(50, 4)).astype(np.float32)
    sources = [[0, 1], [10], [49, 20, 30], [5]]
    with ScoreWriter(tmp_path / "s.zarr", [f"r{i}" for i in range(50)], [f"q{j}" for j in range(4)]) as w:
        w.write(0, S)
    got = planted_retrieval(str(tmp_path / "s.zarr"), sources, ks=(3,))
    rank, prec, _ = _brute(S.astype(np.float64), sources, (3,))
    np.testing.assert_array_equal(got["rank"], rank)
    np.testing.assert_allclose(got["precision"][3], prec[3])


def test_bad_sources_are_named():
    S = np.zeros((5, 2))
    with pytest.raises(ValueError, match="one list of source rows per query"):
        planted_retrieval(S, [[0]], ks=(1,))
    with pytest.raises(ValueError, match="query 1 names row 7"):
        planted_retrieval(S, [[0], [7]], ks=(1,))
    with pytest.raises(ValueError, match="query 0 has no source row"):
        planted_retrieval(S, [[], [1]], ks=(1,))
    with pytest.raises(ValueError, match="ks must lie in 1..N=5"):
        planted_retrieval(S, [[0], [1]], ks=(6,))


def test_an_exact_copy_is_ranked_first_by_grad_cos_on_a_tiny_model():
    """Queries that are exact copies of training segments 2, 7 and 11 (same tokens, same loss
    positions): Grad-Cos from aria's projected gradients ranks each source first (planted
    rank 1, MRR 1), and so does the cosine of full gradients taken here by plain autograd,
    one example at a time."""
    import torch

    from aria.attribution.gradcos import operators
    from aria.attribution.projection import project_gradients
    from aria.models.training import train_model
    from aria.models.transformer import ModelConfig, MusicTransformer, per_example_loss

    rng = np.random.default_rng(3)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=12, vocab_size=11)
    tokens = rng.integers(0, 10, size=(16, 12))
    mask = np.ones_like(tokens, dtype=bool)
    res = train_model(tokens, mask, cfg=cfg, epochs=3, lr=0.01, batch_size=8, n_checkpoints=1, random_state=0)
    model = MusicTransformer(cfg)
    model.load_state_dict(res["final"])
    planted = [2, 7, 11]
    q_tokens, q_mask = tokens[planted], mask[planted]
    train_phi = project_gradients(model, tokens, mask, k=64, seed=1)
    query_phi = project_gradients(model, q_tokens, q_mask, k=64, seed=1)
    rows, ops = operators([{"train": train_phi, "query": query_phi}], {})
    S = rows[0] @ ops[0]
    got = planted_retrieval(S, [[j] for j in planted], ks=(1,))
    np.testing.assert_array_equal(got["rank"], [1, 1, 1])
    assert got["mrr"] == 1.0 and got["mean_precision"][1] == 1.0

    def full_grad(t):
        model.zero_grad()
        x = torch.as_tensor(t[None], dtype=torch.long)
        per_example_loss(model(x), x, torch.ones_like(x, dtype=torch.bool))[0].backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double().numpy()

    model.eval()
    G = np.stack([full_grad(t) for t in tokens])
    G /= np.linalg.norm(G, axis=1, keepdims=True)
    for q, j in enumerate(planted):
        g = full_grad(q_tokens[q])
        cos = G @ (g / np.linalg.norm(g))
        assert int(np.argmax(cos)) == j and cos[j] == pytest.approx(1.0)
        assert np.sort(cos)[-2] < 1 - 1e-6  # no other segment ties with the copy


def test_channel_ranks_and_the_summary_by_aspect():
    from aria.evaluation.planted import channel_ranks, planted_summary

    z = {
        "melody": np.array([3.0, 0.1, np.nan, 1.0]),
        "harmony": np.array([1.0, 2.0, 0.5, 1.0]),
        "rhythm": np.array([-1.0, 0.1, 0.4, 0.0]),
    }
    ranks = channel_ranks(z, ["melody", "rhythm", "melody", None])
    # query 0: melody largest; 1: rhythm ties melody below harmony -> 2; 2: NaN ranks last; 3: full copy
    np.testing.assert_array_equal(ranks[:3], [1, 2, 3])
    assert np.isnan(ranks[3])
    with pytest.raises(ValueError, match="'timbre' of query 0"):
        channel_ranks(z, ["timbre", None, None, None])
    S = np.array([[3.0, 0.0, 1.0, 0.0], [2.0, 5.0, 0.0, 0.0], [1.0, 1.0, 2.0, 1.0]])
    ret = planted_retrieval(S, [[0], [2], [1], [2]], ks=(1, 2))
    # ranks: q0 row 0 first; q1 row 2 second (behind row 1); q2 row 1 third; q3 row 2 first
    np.testing.assert_array_equal(ret["rank"], [1, 2, 3, 1])
    s = planted_summary(ret, ["melody", "rhythm", "melody", "full"], ranks)
    assert s["all"]["n"] == 4 and s["all"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1) / 4)
    mel = s["by_aspect"]["melody"]
    assert mel["n"] == 2 and mel["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert mel["precision"][1] == pytest.approx(0.5) and mel["channel_rank"] == pytest.approx(2.0)
    assert mel["channel_first"] == pytest.approx(0.5)
    assert s["by_aspect"]["full"]["channel_rank"] is None and list(s["by_aspect"]) == ["melody", "rhythm", "full"]
