"""Model loss against a hand-written reference; seeded training and sampling are reproducible."""

import numpy as np
import pytest
import torch

from aria.models.training import generate, train_model
from aria.models.transformer import ModelConfig, MusicTransformer, per_example_loss
from aria.symbolic.tokenize import PAD

CFG = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=24)


def _padded_batch(*, seed, n, pad_from, prompt):
    """A random model and n sequences: item 1 padded from ``pad_from``, item 2's first ``prompt``
    positions outside the loss mask."""
    torch.manual_seed(seed)
    m = MusicTransformer(CFG)
    tok = torch.randint(0, PAD, (n, 24))
    tok[1, pad_from:] = PAD
    mask = tok != PAD
    lm = torch.ones_like(mask)
    lm[2, :prompt] = False
    return m, tok, mask, lm


def test_per_example_loss_matches_manual_cross_entropy():
    m, tok, mask, lm = _padded_batch(seed=0, n=3, pad_from=20, prompt=10)
    logits = m(tok)
    got = per_example_loss(logits, tok, mask, lm)
    logp = torch.log_softmax(logits, -1)
    for b in range(3):
        terms = [-logp[b, t - 1, tok[b, t]] for t in range(1, 24) if mask[b, t] and lm[b, t]]
        assert torch.allclose(got[b], torch.stack(terms).mean(), atol=1e-6)


def test_target_example_loss_equals_the_full_logits_loss():
    """target_example_loss (head and softmax at target positions only) = per_example_loss of the
    full logits, values and gradients, with padding, a loss mask and an item without targets."""
    from aria.models.transformer import target_example_loss

    m, tok, mask, lm = _padded_batch(seed=1, n=4, pad_from=15, prompt=12)
    lm[3] = False  # no target position: loss 0 in both
    grads = []
    for f in (lambda: per_example_loss(m(tok), tok, mask, lm), lambda: target_example_loss(m, tok, mask, lm)):
        m.zero_grad()
        loss = f()
        (loss * torch.arange(1.0, 5.0)).sum().backward()
        grads.append((loss.detach(), [p.grad.clone() for p in m.parameters()]))
    (ref, gref), (got, g) = grads
    assert got[3] == 0 and ref[3] == 0
    # float32 means of <= 23 token losses ~6 (log-softmax over the vocabulary): ~sqrt(23) u32 x 6
    # = 1.7e-6 typical; tolerance 7e-6 (measured 1e-6)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    # each gradient entry sums 4 x <= 23 weighted position terms in float32 in another order:
    # ~sqrt(92) u32 = 6e-7 of its terms; atol 2e-6 x max|grad| near 0 (measured 2.7e-7 x max)
    for a, b in zip(g, gref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6 * float(b.abs().max()))


def _data(n=20, L=24, seed=0):
    rng = np.random.default_rng(seed)
    tok = rng.integers(0, PAD, (n, L))
    return tok, np.ones_like(tok, dtype=bool)


def test_training_is_seeded_and_learns():
    tok, mask = _data()
    a = train_model(tok, mask, cfg=CFG, epochs=3, lr=3e-3, batch_size=8, n_checkpoints=3, random_state=5)
    b = train_model(tok, mask, cfg=CFG, epochs=3, lr=3e-3, batch_size=8, n_checkpoints=3, random_state=5)
    c = train_model(tok, mask, cfg=CFG, epochs=3, lr=3e-3, batch_size=8, n_checkpoints=3, random_state=6)
    for k in a["final"]:
        assert torch.equal(a["final"][k], b["final"][k])
    assert any(not torch.equal(a["final"][k], c["final"][k]) for k in a["final"])
    assert [ck["epoch"] for ck in a["checkpoints"]] == [1, 2, 3]
    lrs = [ck["lr"] for ck in a["checkpoints"]]
    assert lrs[0] > lrs[1] > lrs[2] > 0  # cosine decay, recorded for TracIn
    assert a["losses"][-1] < a["losses"][0]


def test_generate_is_seeded_and_keeps_prompt():
    torch.manual_seed(1)
    m = MusicTransformer(CFG)
    prompts, _ = _data(n=4, L=6)
    x = generate(m, prompts, length=20, temperature=1.0, random_state=3)
    y = generate(m, prompts, length=20, temperature=1.0, random_state=3)
    z = generate(m, prompts, length=20, temperature=1.0, random_state=4)
    assert x.shape == (4, 20) and np.array_equal(x, y) and not np.array_equal(x, z)
    np.testing.assert_array_equal(x[:, :6], prompts)
    assert (x != PAD).all()


def test_fused_attention_equals_the_explicit_softmax():
    """fused_attention() switches to PyTorch's fused causal kernel: same logits and gradients up to
    float32 round-off, and it restores the explicit form on exit."""
    import torch

    from aria.models.transformer import ModelConfig, MusicTransformer, fused_attention, per_example_loss

    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=64, vocab_size=50))
    x = torch.randint(0, 50, (3, 64))
    mask = torch.ones_like(x, dtype=torch.bool)

    def run():
        model.zero_grad()
        logits = model(x)
        per_example_loss(logits, x, mask).sum().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    ref, gref = run()
    with fused_attention(model):
        got, g = run()
    # the fused kernel reorders the float32 softmax sums over <= 64 keys and d = 32 products through
    # 2 layers: ~sqrt(64 * 32) u32 = 3e-6 relative to logits ~2; tolerances 1e-5 (measured 6e-7 abs,
    # gradients 1.5e-8 abs): a wrong mask or scale changes them by O(1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, gref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not any(b.fused for b in model.blocks)
    # the causal mask holds: changing a later token never changes an earlier position's logits
    y = x.clone()
    y[:, 40] = (y[:, 40] + 1) % 50
    with fused_attention(model):
        torch.testing.assert_close(model(y)[:, :40], got[:, :40], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(y)[:, 40:], got[:, 40:])


def _reference_training(
    tok, mask, *, epochs, lr, batch_size, random_state, total, wd=0.01, min_ratio=0.1, init_state=None
):
    """The training loop written out from its description (AdamW, cosine decay from lr to
    min_ratio * lr over ``total`` steps, gradient clipping at 1, one fresh permutation per
    epoch from a generator seeded like the weights, or the weights seeded by ``init_state``),
    stopping after ``total`` steps."""
    import math

    from aria.models.transformer import batch_loss

    torch.manual_seed(random_state if init_state is None else init_state)
    gen = torch.Generator().manual_seed(random_state)
    model = MusicTransformer(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    X, M = torch.as_tensor(tok, dtype=torch.long), torch.as_tensor(mask)
    step = 0
    while step < total:
        model.train()
        perm = torch.randperm(len(X), generator=gen)
        for b in range(math.ceil(len(X) / batch_size)):
            if step == total:
                break
            idx = perm[b * batch_size : (b + 1) * batch_size]
            for g in opt.param_groups:
                g["lr"] = lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * step / total)))
            loss = batch_loss(model, X[idx], M[idx], None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
    return model.state_dict()


def test_total_steps_none_is_the_epoch_recipe_bit_for_bit():
    """total_steps=None (default) and total_steps = epochs * ceil(N / batch) train exactly the
    model of the written-out epoch loop, bit for bit."""
    tok, mask = _data()  # 20 sequences, batch 8: 3 steps per epoch
    kw = dict(cfg=CFG, epochs=2, lr=3e-3, batch_size=8, n_checkpoints=2, random_state=5)
    ref = _reference_training(tok, mask, epochs=2, lr=3e-3, batch_size=8, random_state=5, total=6)
    for res in (train_model(tok, mask, **kw), train_model(tok, mask, **kw, total_steps=6)):
        assert res["steps"] == 6 and len(res["losses"]) == 2
        assert [ck["epoch"] for ck in res["checkpoints"]] == [1, 2]
        for k in ref:
            assert torch.equal(res["final"][k], ref[k]), k


def test_total_steps_continues_over_shuffled_epochs_and_counts_its_steps(monkeypatch):
    """total_steps = 8 on 3 steps per epoch: 3 epochs, the last cut after 2 steps; the optimizer
    steps 8 times, the weights equal the written-out loop's, and the checkpoints stay consistent
    (the last one after the final, partial epoch, at the end of the learning-rate schedule)."""
    calls = []
    orig = torch.optim.AdamW.step

    def counting(self, *a, **k):
        calls.append(1)
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    tok, mask = _data()
    res = train_model(
        tok, mask, cfg=CFG, epochs=1, lr=3e-3, batch_size=8, n_checkpoints=3, random_state=7, total_steps=8
    )
    assert len(calls) == 8 and res["steps"] == 8
    assert len(res["losses"]) == 3 and [ck["epoch"] for ck in res["checkpoints"]] == [1, 2, 3]
    lr_end = 3e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 7 / 8)))  # the rate of step 8 of 8
    assert res["checkpoints"][-1]["lr"] == pytest.approx(lr_end)
    assert all(torch.equal(res["final"][k], res["checkpoints"][-1]["state"][k]) for k in res["final"])
    monkeypatch.setattr(torch.optim.AdamW, "step", orig)
    ref = _reference_training(tok, mask, epochs=3, lr=3e-3, batch_size=8, random_state=7, total=8)
    for k in ref:
        assert torch.equal(res["final"][k], ref[k]), k
    with pytest.raises(ValueError, match="n_checkpoints"):
        train_model(tok, mask, cfg=CFG, epochs=9, lr=3e-3, batch_size=8, n_checkpoints=4, random_state=7, total_steps=8)


def test_init_state_seeds_the_weights_and_random_state_the_data_order():
    """init_state = 5 with data-order seeds 7 and 8 (LDS ``init: shared``): each run equals the
    written-out loop whose weights are seeded by 5 and whose permutations by its own seed; with
    lr = 0 both keep exactly the initial weights of a model built after ``torch.manual_seed(5)``;
    the two runs differ only through the data order."""
    tok, mask = _data()
    kw = dict(cfg=CFG, epochs=2, lr=3e-3, batch_size=8, n_checkpoints=1, init_state=5)
    finals = []
    for seed in (7, 8):
        res = train_model(tok, mask, random_state=seed, **kw)
        ref = _reference_training(tok, mask, epochs=2, lr=3e-3, batch_size=8, random_state=seed, total=6, init_state=5)
        assert all(torch.equal(res["final"][k], ref[k]) for k in ref)
        finals.append(res["final"])
    assert not torch.equal(finals[0]["head.weight"], finals[1]["head.weight"])
    torch.manual_seed(5)
    init = MusicTransformer(CFG).state_dict()
    for seed in (7, 8):
        still = train_model(tok, mask, random_state=seed, **{**kw, "lr": 0.0})["final"]
        assert all(torch.equal(still[k], init[k]) for k in init)
    # without init_state the run's own seed draws the weights (the fresh-init recipe)
    fresh = train_model(tok, mask, random_state=7, **{**kw, "lr": 0.0, "init_state": None})["final"]
    assert not torch.equal(fresh["head.weight"], init["head.weight"])


def test_fused_training_trains_the_same_model():
    """fused=True (the LDS retrainings) differs from the explicit attention only by float32
    round-off: the per-example losses after six AdamW steps agree far inside the loss change
    that training makes, and the blocks keep the fused flag only for that run."""
    from aria.models.training import example_losses

    tok, mask = _data()
    kw = dict(cfg=CFG, epochs=2, lr=3e-3, batch_size=8, n_checkpoints=1, random_state=5)
    losses = []
    for fused in (False, True):
        model = MusicTransformer(CFG)
        model.load_state_dict(train_model(tok, mask, fused=fused, **kw)["final"])
        assert not any(b.fused for b in model.blocks)
        losses.append(example_losses(model, tok, mask))
    torch.manual_seed(5)
    untrained = example_losses(MusicTransformer(CFG), tok, mask)
    moved = np.abs(losses[0] - untrained).min()
    assert moved > 1e-2
    # float32 round-off of ~1e-7 per operation, grown over six steps: far below 1e-4 nats
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-4, rtol=0)
