"""Unlearning-based attribution (docs/spec.md §8): hand computation, the first-order identity, the
Fisher of per-example gradients, masks, and a stochastic (denoising) loss."""

import numpy as np
import pytest
import torch

from aria.attribution.unlearning import (
    diagonal_fisher,
    example_generator,
    example_losses,
    target_masks,
    unlearn,
    unlearning_scores,
)
from aria.models.transformer import ModelConfig, MusicTransformer, per_example_loss


# --------------------------------------------------------------------------- a linear model
def _linear(seed=0, n=12, d=4):
    torch.manual_seed(seed)
    model = torch.nn.Linear(d, 1, bias=False).double()
    x = torch.randn(n, d, dtype=torch.float64)
    y = torch.randn(n, dtype=torch.float64)
    return model, {"key": [f"z{i}" for i in range(n)], "x": x, "y": y}


def _sq_loss(model, batch, gen):
    return 0.5 * (model(batch["x"])[:, 0] - batch["y"]) ** 2


def test_update_and_fisher_by_hand():
    model, data = _linear()
    w = model.weight.detach()[0].clone()
    r = data["x"] @ w - data["y"]
    g = r[:, None] * data["x"]  # per-example gradients, (n, d)
    F_hand = (g**2).mean(0)
    F = diagonal_fisher(model, [data], _sq_loss)["weight"][0]
    torch.testing.assert_close(F, F_hand)
    # the square of the batch gradient is a different quantity
    assert not torch.allclose(F, g.mean(0) ** 2, rtol=0.5)
    q = {"key": ["q"], "x": torch.randn(1, 4, dtype=torch.float64), "y": torch.tensor([0.3], dtype=torch.float64)}
    gq = (q["x"][0] @ w - q["y"][0]) * q["x"][0]
    eta = 0.05
    F_eff = torch.clamp(F_hand, min=1e-3 * F_hand.mean())
    theta = unlearn(model, q, _sq_loss, {"weight": F[None]}, lr=eta, steps=1)
    torch.testing.assert_close(theta["weight"][0], w + eta * gq / F_eff)
    torch.testing.assert_close(model.weight.detach()[0], w)  # the model itself is left at θ₀
    # two steps: the second gradient is taken at the new θ
    w1 = w + eta * gq / F_eff
    w2 = w1 + eta * ((q["x"][0] @ w1 - q["y"][0]) * q["x"][0]) / F_eff
    torch.testing.assert_close(unlearn(model, q, _sq_loss, {"weight": F[None]}, lr=eta, steps=2)["weight"][0], w2)
    # scores: the loss change of every training item under θ′
    tau = unlearning_scores(model, lambda: [data], q, _sq_loss, {"weight": F[None]}, lr=eta)
    want = 0.5 * (data["x"] @ (w + eta * gq / F_eff) - data["y"]) ** 2 - 0.5 * r**2
    np.testing.assert_allclose(tau, want.numpy(), rtol=1e-12)
    assert np.all(unlearning_scores(model, lambda: [data], q, _sq_loss, {"weight": F[None]}, lr=0.0) == 0.0)


# --------------------------------------------------------------------------- a tiny transformer
def _tiny(seed=3):
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=32, vocab_size=24)
    model = MusicTransformer(cfg).double()
    rng = np.random.default_rng(seed)
    toks = torch.as_tensor(rng.integers(1, 24, size=(10, 16)))
    mask = torch.ones_like(toks, dtype=torch.bool)
    return model, {"key": [f"s{i}" for i in range(10)], "tokens": toks, "mask": mask}


def _lm_loss(model, batch, gen):
    return per_example_loss(model(batch["tokens"]), batch["tokens"], batch["mask"]).double()


def _flat_grad(model, batch, names):
    loss = _lm_loss(model, batch, None)[0]
    params = dict(model.named_parameters())
    gs = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return torch.cat([(torch.zeros_like(params[n]) if g is None else g).reshape(-1) for n, g in zip(names, gs)])


def test_fisher_is_the_mean_of_squared_per_example_gradients():
    model, data = _tiny()
    names = [n for n, _ in model.named_parameters()]
    F = diagonal_fisher(model, [data], _lm_loss)
    per = torch.stack(
        [_flat_grad(model, {k: v[i : i + 1] for k, v in data.items() if k != "key"}, names) for i in range(10)]
    )
    torch.testing.assert_close(torch.cat([F[n].reshape(-1) for n in names]), (per**2).mean(0))
    batch_sq = per.mean(0) ** 2
    assert float((per**2).mean(0).sum()) > 2 * float(batch_sq.sum())  # not the squared batch gradient


ETAS = (1e-5, 1e-6, 1e-7, 1e-8)


def test_first_order_identity_and_its_tolerance():
    """τ(ẑ, z)/η → g(z)ᵀ F⁻¹ g(ẑ) as η → 0 (F floored as in `unlearn`): the error shrinks with η."""
    model, data = _tiny()
    names = [n for n, _ in model.named_parameters()]
    F = diagonal_fisher(model, [data], _lm_loss)
    Fv = torch.cat([F[n].reshape(-1) for n in names])
    Fv = torch.clamp(Fv, min=1e-3 * float(Fv.mean()))
    q_tokens = torch.as_tensor(np.random.default_rng(9).integers(1, 24, size=(1, 16)))
    q = {"key": ["q"], "tokens": q_tokens, "mask": torch.ones_like(q_tokens, dtype=torch.bool)}
    gq = _flat_grad(model, q, names)
    want = np.array(
        [
            float(
                _flat_grad(model, {"tokens": data["tokens"][i : i + 1], "mask": data["mask"][i : i + 1]}, names)
                @ (gq / Fv)
            )
            for i in range(10)
        ]
    )
    errs = []
    for eta in ETAS:
        tau = unlearning_scores(model, lambda: [data], q, _lm_loss, F, lr=eta)
        errs.append(np.abs(tau / eta - want).max() / np.abs(want).max())
    # first order: the error falls tenfold per decade of η (measured 3.7e-2, 3.6e-3, 3.6e-4, 3.6e-5)
    assert all(a > 5 * b for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 1e-4  # the stated tolerance at η = 1e-8


def test_target_groups():
    model, _ = _tiny()
    assert set(target_masks(model, "mlp")) == {
        "blocks.0.ff1.weight",
        "blocks.0.ff1.bias",
        "blocks.0.ff2.weight",
        "blocks.0.ff2.bias",
    }
    kv = target_masks(model, "kv")["blocks.0.qkv.weight"]
    assert kv[:16].sum() == 0 and bool((kv[16:] == 1).all())  # keys and values, not queries
    with pytest.raises(ValueError, match="selects no parameter"):
        target_masks(model, r"nothing\.here")
    F = diagonal_fisher(model, [_tiny()[1]], _lm_loss)
    q = {"key": ["q"], "tokens": _tiny()[1]["tokens"][:1], "mask": _tiny()[1]["mask"][:1]}
    theta = unlearn(model, q, _lm_loss, F, lr=1e-2, group="attention")
    for n, p in model.named_parameters():
        moved = not torch.equal(theta[n], p.detach())
        assert moved == (".qkv." in n or ".proj." in n), n


def test_mixed_masking_ignores_padding_that_none_would_unlearn():
    """ẑ padded with a long run of PAD tokens: with M_U (mixed) the scores equal those of the
    unpadded ẑ; without it (none) the padding dominates the unlearned loss and the scores move."""
    model, data = _tiny()
    F = diagonal_fisher(model, [data], _lm_loss)
    real = torch.as_tensor(np.random.default_rng(5).integers(1, 24, size=(1, 8)))
    padded = torch.cat([real, torch.zeros(1, 24, dtype=real.dtype)], dim=1)  # 8 real + 24 padding
    m_real = torch.ones_like(real, dtype=torch.bool)
    m_u = torch.cat([m_real, torch.zeros(1, 24, dtype=torch.bool)], dim=1)
    base = unlearning_scores(
        model, lambda: [data], {"key": ["q"], "tokens": real, "mask": m_real}, _lm_loss, F, lr=1e-3
    )
    mixed = unlearning_scores(
        model, lambda: [data], {"key": ["q"], "tokens": padded, "mask": m_u}, _lm_loss, F, lr=1e-3
    )
    none = unlearning_scores(
        model, lambda: [data], {"key": ["q"], "tokens": padded, "mask": torch.ones_like(m_u)}, _lm_loss, F, lr=1e-3
    )
    np.testing.assert_allclose(mixed, base, rtol=1e-9, atol=1e-15)
    assert np.corrcoef(none, base)[0, 1] < 0.9 and np.abs(none - base).max() > 0.5 * np.abs(base).max()


# --------------------------------------------------------------------------- a stochastic (denoising) loss
class _Denoiser(torch.nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d + 1, 16), torch.nn.Tanh(), torch.nn.Linear(16, d))

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=1))


def _diffusion_loss(model, batch, gen, n_t=8):
    """Mean over n_t sampled timesteps and noises of ‖ε̂(x_t, t) − ε‖² (a toy DDPM loss)."""
    x0 = batch["x"]
    out = torch.zeros(len(x0), dtype=x0.dtype)
    for _ in range(n_t):
        t = torch.rand(len(x0), generator=gen, dtype=x0.dtype)
        eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        a = torch.cos(t * torch.pi / 2)[:, None]
        xt = a * x0 + torch.sqrt(1 - a**2) * eps
        out = out + ((model(xt, t) - eps) ** 2).mean(1)
    return out / n_t


def test_stochastic_loss_uses_the_same_noise_before_and_after():
    torch.manual_seed(0)
    model = _Denoiser().double()
    data = {"key": [f"x{i}" for i in range(8)], "x": torch.randn(8, 6, dtype=torch.float64)}
    q = {"key": ["q"], "x": torch.randn(1, 6, dtype=torch.float64)}
    F = diagonal_fisher(model, [data], _diffusion_loss, seed=1)
    # η = 0: the same seeded timesteps and noise on both sides, so τ is exactly 0
    assert np.all(unlearning_scores(model, lambda: [data], q, _diffusion_loss, F, lr=0.0, seed=1) == 0.0)
    # ... which fresh noise would not give: two passes with different seeds disagree
    a = example_losses(model, [data], _diffusion_loss, seed=1)
    b = example_losses(model, [data], _diffusion_loss, seed=2)
    assert np.abs(a - b).max() > 1e-3
    # the same generator for the same (seed, item): reproducible
    g1, g2 = example_generator(1, "x0"), example_generator(1, "x0")
    assert torch.equal(torch.randn(3, generator=g1), torch.randn(3, generator=g2))
    # a small step raises the query's own (same-noise) loss: it was unlearned
    theta = unlearn(model, q, _diffusion_loss, F, lr=1e-3, seed=1)
    before = float(_diffusion_loss(model, q, example_generator(1, "q"))[0].detach())
    with torch.no_grad():
        saved = {n: p.clone() for n, p in model.named_parameters()}
        for n, p in model.named_parameters():
            p.copy_(theta[n])
        after = float(_diffusion_loss(model, q, example_generator(1, "q"))[0])
        for n, p in model.named_parameters():
            p.copy_(saved[n])
    assert after > before


# --------------------------------------------------------------------------- the workflow commands
def test_cli_chunks_equal_the_library(tmp_path):
    """`aria unlearning-fisher` + `aria unlearning-scores` per query chunk give the library's scores,
    with the mask strategy's M_U on the query and M_L on the training items."""
    import json

    from aria.cli import main
    from aria.io.checkpoints import write_checkpoint
    from aria.io.tables import load_torch, read_npz, write_npz

    model, data = _tiny()
    model = model.float()
    cfg = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=32, vocab_size=24)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    write_checkpoint(tmp_path / "m.pt", config=cfg, checkpoints=[{"epoch": 1, "lr": 0.01, "state": state}], final=state)
    rng = np.random.default_rng(1)
    mask = np.ones((10, 16), bool)
    mask[:3, 12:] = False  # padded tails of three training segments
    write_npz(tmp_path / "train.npz", tokens=data["tokens"].numpy(), mask=mask, segment_ids=np.array(data["key"]))
    qt = rng.integers(1, 24, size=(5, 16))
    qm = np.ones((5, 16), bool)
    qm[:, 10:] = False  # padded tails of the queries
    lm = np.ones((5, 16), bool)
    lm[:, :4] = False  # the prompt
    write_npz(tmp_path / "q.npz", tokens=qt, mask=qm, loss_mask=lm, query_ids=np.array([f"q{i}" for i in range(5)]))
    base = dict(device="cpu", seed=3, mask="mixed")
    main(["unlearning-fisher", "--model", str(tmp_path / "m.pt"), "--segments", str(tmp_path / "train.npz"),
          "--params", json.dumps(base), "--out", str(tmp_path / "F.pt")])  # fmt: skip
    run = dict(base, lr=1e-3, steps=2, group="all", floor=1e-3, n_chunks=2, precision="float64", check=1)
    for precision in ("float64", "mixed"):
        for c in range(2):
            main(["unlearning-scores", "--model", str(tmp_path / "m.pt"), "--segments", str(tmp_path / "train.npz"),
                  "--queries", str(tmp_path / "q.npz"), "--fisher", str(tmp_path / "F.pt"),
                  "--params", json.dumps(dict(run, chunk=c, precision=precision)),
                  "--out", str(tmp_path / f"{precision}{c}.npz")])  # fmt: skip
    got = [read_npz(tmp_path / f"float64{c}.npz") for c in range(2)]
    mixed = [read_npz(tmp_path / f"mixed{c}.npz") for c in range(2)]
    assert [list(g["query_ids"]) for g in got] == [["q0", "q1", "q2"], ["q3", "q4"]]
    S = np.concatenate([g["scores"] for g in got], axis=1)
    # the library on the same model: Fisher and training losses with the real mask (mixed: no M_L
    # -> all ones), the query's loss with its mask (M_U) and its prompt excluded
    from aria.models.transformer import fused_attention

    ones = torch.ones(10, 16, dtype=torch.bool)
    train = {"key": data["key"], "tokens": data["tokens"], "mask": ones}
    with fused_attention(model):  # as the jobs run it
        F = diagonal_fisher(model, [train], _lm_loss)
    stored = load_torch(tmp_path / "F.pt")["fisher"]
    for n in F:
        torch.testing.assert_close(stored[n], F[n])

    def loss(m, b, g):
        return per_example_loss(m(b["tokens"]), b["tokens"], b["mask"], b.get("loss_mask"))

    from aria.attribution.unlearning import at_precision

    model64 = at_precision(model, "float64")  # the jobs' default precision, from the same float32 weights
    for q in range(5):
        query = {
            "key": [f"q{q}"],
            "tokens": torch.as_tensor(qt[q : q + 1]),
            "mask": torch.as_tensor(qm[q : q + 1]),
            "loss_mask": torch.as_tensor(lm[q : q + 1]),
        }
        with fused_attention(model64):
            want = unlearning_scores(model64, lambda: [train], query, loss, stored, lr=1e-3, steps=2, seed=3)
        # with the job's own Fisher (compared with F above, to float32 round-off, which F⁻¹ would pass
        # on to τ). The jobs evaluate the loss on target positions only (target_example_loss), equal to the full
        # logits' loss up to float64 round-off (~1e-13 of the losses, ~1e-12 of τ after two
        # F⁻¹-preconditioned steps); atol keeps a 1000x margin over that. The chunk stores τ in
        # float32: rtol = 2 u32 covers the storage rounding (u32 = 2^-24).
        np.testing.assert_allclose(S[:, q], want, rtol=2.0**-23, atol=1e-9 * np.abs(want).max())
    # the first query of each chunk was scored again in float32, from θ₀ on: check_float64 is the
    # unrounded τ, check_float32 differs from it by float32 round-off
    spread = np.sqrt(np.mean(S.astype(np.float64).var(axis=0)))
    for c, first in ((0, 0), (1, 3)):
        g = got[c]
        assert g["check_float64"].shape == g["check_float32"].shape == (10, 1) and str(g["precision"]) == "float64"
        np.testing.assert_allclose(g["check_float64"][:, 0], S[:, first], rtol=2.0**-23, atol=0)
        d = np.abs(g["check_float32"][:, 0] - g["check_float64"][:, 0])
        assert 0 < d.max() < 1e-2 * spread
        # mixed (float32 hidden states, float64 output layer and softmax): its scores are the float64
        # ones to far below 1% of τ's spread, and its check columns are the same queries in all formats
        m = mixed[c]
        assert str(m["precision"]) == "mixed" and set(m) >= {"check_mixed", "check_float32", "check_float64"}
        np.testing.assert_array_equal(m["check_float64"], g["check_float64"])  # the same float64 computation
        np.testing.assert_allclose(m["check_mixed"][:, 0], m["scores"][:, 0], rtol=2.0**-23, atol=0)
        # at this large, two-step η the update's float32 gradient dominates both mixed's and float32's
        # round-off (measured 2-3e-4 of the spread for both); ERROR_LIMIT's 1% is the promise
        assert np.abs(m["check_mixed"] - m["check_float64"]).max() < 1e-2 * spread
    Sm = np.concatenate([m["scores"] for m in mixed], axis=1)
    np.testing.assert_allclose(Sm, S, rtol=0, atol=1e-2 * spread)
    from aria.io.tables import save_torch

    wrong = {"fisher": {n: f for n, f in stored.items() if not n.startswith("head.")}}
    save_torch(tmp_path / "wrong.pt", wrong)  # a Fisher that does not cover the model
    with pytest.raises(ValueError, match=r"wrong.pt: no Fisher entry of the right shape for 2 parameters"):
        main(["unlearning-scores", "--model", str(tmp_path / "m.pt"), "--segments", str(tmp_path / "train.npz"),
              "--queries", str(tmp_path / "q.npz"), "--fisher", str(tmp_path / "wrong.pt"),
              "--params", json.dumps(dict(run, chunk=0)), "--out", str(tmp_path / "bad.npz")])  # fmt: skip
    assert not (tmp_path / "bad.npz").exists()
    with pytest.raises(ValueError, match="mask strategy must be one of"):
        main(["unlearning-fisher", "--model", str(tmp_path / "m.pt"), "--segments", str(tmp_path / "train.npz"),
              "--params", json.dumps(dict(base, mask="some")), "--out", str(tmp_path / "G.pt")])  # fmt: skip


# --------------------------------------------------------------------------- self-influence on a memorizing model
def _memorizer(n=12, length=16, vocab=24, seed=0, epochs=400):
    """A tiny transformer trained until it reproduces n random sequences (memorization)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab, (n, length), generator=g)
    tokens[:, 0] = torch.arange(n) % (vocab - 1) + 1  # distinct openings: every continuation is determined
    torch.manual_seed(seed)
    model = MusicTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=length, vocab_size=vocab))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for _ in range(epochs):
        opt.zero_grad()
        per_example_loss(model(tokens), tokens, mask).mean().backward()
        opt.step()
    model.eval()
    return model, tokens.numpy(), mask.numpy()


def test_self_influence_on_a_memorizing_model_ranks_the_target_first():
    """Acceptance: unlearning a memorized training item raises its own loss more than any other's:
    R(z_tar) = 1 for most targets; recomputed by hand from the library's τ (rank, top-k similarity)."""
    from aria.attribution.unlearning import model_embeddings, self_influence, token_batches, token_loss
    from aria.evaluation.selfinfluence import topk_similarity

    model, tokens, mask = _memorizer()
    with torch.no_grad():
        final = per_example_loss(model(torch.as_tensor(tokens)), torch.as_tensor(tokens), torch.as_tensor(mask))
    assert float(final.max()) < 0.05  # memorized
    ids = np.array([f"s{i}" for i in range(len(tokens))])
    train = {"tokens": tokens, "mask": mask, "segment_ids": ids}
    F = diagonal_fisher(model, token_batches(tokens, mask, ids=ids), token_loss)
    targets = np.arange(len(tokens))
    prompts = {"tokens": tokens[:4], "loss_mask": np.arange(tokens.shape[1])[None, :].repeat(4, 0) >= 4}
    # a memorized item's gradients are tiny, and so is F (~1e-11): η must be small for a first-order step
    doc = self_influence(model, train, F, targets, lr=1e-9, top_k=3, prompts=prompts, seed=3)
    ranks = np.asarray(doc["rank"])
    assert np.mean(ranks == 1) >= 0.75, ranks
    assert doc["median_rank"] == np.median(ranks) and doc["share_rank1"] == np.mean(ranks == 1)
    # one target by hand: τ from unlearning_scores, rank and top-k similarity from their definitions
    t = 5
    (q,) = token_batches(tokens[t : t + 1], mask[t : t + 1], ids=ids[t : t + 1])
    tau = unlearning_scores(model, lambda: token_batches(tokens, mask, ids=ids), q, token_loss, F, lr=1e-9, seed=3)
    assert doc["tau_target"][t] == pytest.approx(tau[t], rel=1e-9)
    assert doc["rank"][t] == 1 + int(np.sum(np.delete(tau, t) >= tau[t]))
    E = model_embeddings(model, tokens, mask)
    assert doc["top_sim"][t] == pytest.approx(topk_similarity(E, tau, t, k=3), abs=1e-12)
    # a larger step moves the model's generations further (the Fréchet distance grows)
    big = self_influence(model, train, F, targets[:4], lr=1e-5, top_k=3, prompts=prompts, seed=3)
    small = self_influence(model, train, F, targets[:4], lr=1e-10, top_k=3, prompts=prompts, seed=3)
    assert big["frechet"] > small["frechet"] >= 0.0


def test_model_embeddings_average_the_real_tokens():
    from aria.attribution.unlearning import model_embeddings

    model, tokens, mask = _memorizer(n=3, epochs=1)
    mask = mask.copy()
    mask[1, 10:] = False
    captured = []
    h = model.ln_f.register_forward_hook(lambda m, i, o: captured.append(o.detach().double()))
    model(torch.as_tensor(tokens))
    h.remove()
    H = captured[0].numpy()
    want = np.stack([H[i][mask[i]].mean(0) for i in range(3)])
    np.testing.assert_allclose(model_embeddings(model, tokens, mask), want, rtol=1e-5, atol=1e-6)


def test_sample_positions_keeps_the_prompt_and_is_reproducible():
    from aria.attribution.unlearning import sample_positions

    model, tokens, _ = _memorizer(n=4, epochs=300)
    sm = np.zeros(tokens.shape, bool)
    sm[:, 6:] = True
    a = sample_positions(model, tokens, sm, generator=torch.Generator().manual_seed(1), temperature=1e-3)
    b = sample_positions(model, tokens, sm, generator=torch.Generator().manual_seed(1), temperature=1e-3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, :6], tokens[:, :6])
    # a memorizing model at near-zero temperature continues its training sequences
    assert np.mean(a[:, 6:] == tokens[:, 6:]) > 0.9


# --------------------------------------------------------------------------- precision
def test_at_precision_converts_a_copy():
    from aria.attribution.unlearning import at_precision

    model, _ = _tiny()
    m32 = model.float()
    m64 = at_precision(m32, "float64")
    assert m64 is not m32 and all(p.dtype == torch.float64 for p in m64.parameters())
    assert all(p.dtype == torch.float32 for p in m32.parameters())  # the original is left as it is
    assert at_precision(m32, "float32") is m32
    for (n, a), (_, b) in zip(m32.named_parameters(), m64.named_parameters()):
        assert torch.equal(a.double(), b), n  # float32 -> float64 is exact
    with pytest.raises(ValueError, match="precision must be one of"):
        at_precision(m32, "float16")


@pytest.mark.parametrize("eta", [1e-5, 1e-8])
def test_float64_scores_and_their_roundoff_estimate(eta):
    """τ in float64 against τ in float32, and the estimate err32 · u64/u32 of float64's round-off
    against an independent measure of it: two float64 evaluations that differ only in their
    reduction order (the fused and the explicit attention kernel)."""
    from aria.attribution.unlearning import at_precision, precision_setup, token_loss
    from aria.evaluation.numerics import score_numerics
    from aria.models.transformer import fused_attention

    model, data = _tiny()
    model = model.float()
    F = diagonal_fisher(model, [data], lambda m, b, g: token_loss(m, b))
    qt = torch.as_tensor(np.random.default_rng(9).integers(1, 24, size=(1, 16)))
    q = {"key": ["q"], "tokens": qt, "mask": torch.ones_like(qt, dtype=torch.bool)}
    tau = {}
    for precision in ("float32", "float64"):
        m = at_precision(model, precision)
        tau[precision] = unlearning_scores(m, lambda: [data], q, token_loss, F, lr=eta)
        with fused_attention(m):
            tau[precision + "/fused"] = unlearning_scores(m, lambda: [data], q, token_loss, F, lr=eta)
    n = score_numerics(
        tau["float64"][:, None], {k: tau[k][:, None] for k in ("float64", "float32")}, precision="float64"
    )
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    d64 = rms(tau["float64"] - tau["float64/fused"])
    # round-off scales with u: the float64 estimate bounds what another float64 reduction order changes
    # (measured 0.6-0.8 of the estimate), and float32's error is of the size the two float32 orders differ
    assert 0 < n["error"] and d64 <= 10 * n["error"]
    d32 = rms(tau["float32"] - tau["float32/fused"])
    assert 0.1 * n["float32_error"] < d32 < 10 * n["float32_error"]
    assert n["ok"] and n["ratio"] < 1e-6
    if eta == 1e-8:  # a small step: float32's round-off is ~20% of τ's spread (2% at 1e-7), float64's 1e-9 of it
        assert n["float32_ratio"] > 5 * 0.01
    # mixed (float64 output layer and softmax): where the loss passes' round-off dominates (small η), it
    # removes most of float32's (measured 12x at 1e-5, 20x at 1e-7-1e-8)
    m, lf = precision_setup(model, "mixed")
    mixed = unlearning_scores(m, lambda: [data], q, lf, F, lr=eta)
    assert rms(mixed - tau["float64"]) < rms(tau["float32"] - tau["float64"]) / 3
