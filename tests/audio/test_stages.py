"""Three-stage audio token layouts; stage-model per-example losses and gradients vs autograd."""

import numpy as np
import pytest
import torch

from aria.attribution.projection import attributed_params, per_example_grads
from aria.audio.stages import STAGES, AudioVocab
from aria.models.training import generate
from aria.models.transformer import ModelConfig, MusicTransformer, per_example_loss

V = AudioVocab(
    n_cond=2,
    cond_size=4,
    sem_size=8,
    sem_rate=5.0,
    n_q=4,
    n_coarse=2,
    code_size=8,
    ac_rate=10.0,
    window_s=(("semantic", 2.0), ("coarse", 1.0), ("fine", 0.5)),
)


def _track(rng, seconds=3.0):
    sem = rng.integers(0, V.sem_size, int(seconds * V.sem_rate))
    codes = rng.integers(0, V.code_size, (int(seconds * V.ac_rate), V.n_q))
    cond = rng.integers(0, V.cond_size, V.n_cond)
    return cond, sem, codes


def test_default_layout_lengths():
    d = AudioVocab()
    assert d.block_lengths("semantic") == [("cond", 4), ("sem", 100)]
    assert d.block_lengths("coarse") == [("cond", 4), ("sem", 40), ("coarse", 86 * 3)]
    assert d.block_lengths("fine") == [("cond", 4), ("sem", 20), ("coarse", 43 * 3), ("fine", 43 * 5)]
    assert d.size == 4 * 64 + 128 + 8 * 256 + 1 and d.pad == d.size - 1


@pytest.mark.parametrize("stage", STAGES)
def test_sequence_round_trip_and_masks(stage):
    rng = np.random.default_rng(0)
    cond, sem, codes = _track(rng)
    tok, mask, lmask = V.stage_sequence(stage, cond=cond, sem=sem, codes=codes, t0=1.0)
    assert tok.shape == mask.shape == lmask.shape == (V.seq_len(stage),)
    assert mask.all()
    back = V.split_codes(stage, tok)
    np.testing.assert_array_equal(back["cond"], cond)
    w = V.window(stage)
    np.testing.assert_array_equal(back["sem"], sem[5 : 5 + int(w * V.sem_rate)])
    if stage != "semantic":
        np.testing.assert_array_equal(back["coarse"], codes[10 : 10 + int(w * V.ac_rate), :2])
    if stage == "fine":
        np.testing.assert_array_equal(back["fine"], codes[10 : 10 + int(w * V.ac_rate), 2:])
    # loss only on the stage's own target block, which is the last block
    tgt_len = V.block_lengths(stage)[-1][1]
    assert lmask.sum() == tgt_len and lmask[-tgt_len:].all()
    allowed = V.allowed_tokens(stage)
    assert allowed[np.arange(len(tok)), tok].all()
    assert (allowed.sum(1) > 0).all() and not allowed[:, V.pad].any()


def test_window_past_the_end_is_padded_and_masked():
    rng = np.random.default_rng(1)
    cond, sem, codes = _track(rng, seconds=2.4)
    tok, mask, lmask = V.stage_sequence("semantic", cond=cond, sem=sem, codes=codes, t0=1.0)
    n_real = len(sem) - 5  # 12 sem tokens, window starts at token 5
    assert mask.sum() == V.n_cond + n_real and (tok[~mask] == V.pad).all()
    assert lmask.sum() == n_real


def _batch(stage, n=5, seed=2):
    rng = np.random.default_rng(seed)
    rows = [
        V.stage_sequence(stage, cond=c, sem=s, codes=k, t0=t)
        for (c, s, k), t in zip((_track(rng) for _ in range(n)), [0.0, 0.5, 1.0, 2.0, 2.8])
    ]
    return [torch.as_tensor(np.stack(x)) for x in zip(*rows)]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_per_example_grads_match_full_batch_autograd(stage):
    torch.manual_seed(0)
    model = MusicTransformer(
        ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=V.seq_len(stage), vocab_size=V.size)
    )
    tok, mask, lmask = _batch(stage)
    params = attributed_params(model)
    G = per_example_grads(model, params, tok, mask, lmask)
    losses = per_example_loss(model(tok), tok, mask, lmask)
    # each per-example loss equals the example run alone
    for i in range(len(tok)):
        alone = per_example_loss(model(tok[i : i + 1]), tok[i : i + 1], mask[i : i + 1], lmask[i : i + 1])[0]
        assert torch.allclose(losses[i], alone, atol=1e-6)
    # sum of per-example gradients == autograd gradient of the summed full-batch loss
    full = torch.autograd.grad(losses.sum(), list(model.parameters()), retain_graph=True)
    np.testing.assert_allclose(G.sum(0).numpy(), torch.cat([g.reshape(-1) for g in full]).numpy(), rtol=1e-4, atol=1e-6)
    # and each row is that example's own autograd gradient
    g1 = torch.autograd.grad(losses[3], list(model.parameters()))
    np.testing.assert_allclose(G[3].numpy(), torch.cat([g.reshape(-1) for g in g1]).numpy(), rtol=1e-4, atol=1e-6)


def test_constrained_generation_is_well_formed():
    torch.manual_seed(0)
    stage = "fine"
    model = MusicTransformer(
        ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=V.seq_len(stage), vocab_size=V.size)
    )
    tok, _, _ = _batch(stage, n=3)
    prefix = sum(n for _, n in V.block_lengths(stage)[:-1])
    allowed = V.allowed_tokens(stage)
    out = generate(
        model,
        tok[:, :prefix].numpy(),
        length=V.seq_len(stage),
        temperature=1.0,
        random_state=0,
        pad=V.pad,
        allowed=allowed,
    )
    assert allowed[np.arange(out.shape[1]), out].all()
    np.testing.assert_array_equal(out[:, :prefix], tok[:, :prefix].numpy())
    fine = V.split_codes(stage, out[0])["fine"]
    assert fine.shape == (int(V.window(stage) * V.ac_rate), V.n_q - V.n_coarse)
    assert fine.min() >= 0 and fine.max() < V.code_size


def test_pretrained_user_model_is_adopted_and_attributed(tmp_path):
    """Adapter: a checkpoint of the user's own model class is adopted instead of training,
    and its projected gradients equal autograd gradients of the stage loss."""
    import json

    from custom_stage_model import BagOfTokens

    from aria.attribution.projection import project_gradients
    from aria.cli import main
    from aria.io.checkpoints import load_model as _load_model
    from aria.io.tables import save_torch, write_npz

    tok, mask, lmask = (x.numpy() for x in _batch("coarse"))
    write_npz(tmp_path / "train.npz", tokens=tok, mask=mask, loss_mask=lmask)
    torch.manual_seed(0)
    user = BagOfTokens(vocab_size=V.size, dim=8)
    blob = {
        "model_class": "custom_stage_model:BagOfTokens",
        "config": {"vocab_size": V.size, "dim": 8},
        "checkpoints": [{"epoch": 1, "lr": 0.1, "state": user.state_dict()}],
        "final": user.state_dict(),
    }
    save_torch(tmp_path / "mine.pt", blob)
    assert (
        main(
            [
                "train",
                "--segments",
                str(tmp_path / "train.npz"),
                "--out",
                str(tmp_path / "m0.pt"),
                "--params",
                json.dumps({"pretrained": str(tmp_path / "mine.pt")}),
            ]
        )
        == 0
    )
    model, lr = _load_model(tmp_path / "m0.pt")
    assert isinstance(model, BagOfTokens) and lr == 0.1
    feats = project_gradients(model, tok, mask, lmask, k=32, seed=3)
    G = per_example_grads(
        model, attributed_params(model), torch.as_tensor(tok), torch.as_tensor(mask), torch.as_tensor(lmask)
    )
    from aria.attribution.projection import BlockProjector

    proj = BlockProjector(G.shape[1], 32, seed=3)
    P = torch.cat([proj.block(b) for b in range(-(-G.shape[1] // proj.block_rows))], 0)
    np.testing.assert_allclose(feats, (G @ P).numpy(), rtol=1e-4, atol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="bad.pt"):
        main(
            [
                "train",
                "--segments",
                str(tmp_path / "train.npz"),
                "--out",
                str(tmp_path / "m1.pt"),
                "--params",
                json.dumps({"pretrained": str(tmp_path / "bad.pt")}),
            ]
        )
    assert not (tmp_path / "m1.pt").exists()


def test_conditioning_rvq_against_brute_force():
    """Codes are the greedy nearest codeword of each residual (brute-force loop), and more
    codebooks leave a smaller residual."""
    from aria.audio.stages import ConditioningRVQ

    X = np.random.default_rng(4).normal(size=(40, 6))
    rvq = ConditioningRVQ(n_cond=3, cond_size=8).fit(X, random_state=2)
    codes = rvq.encode(X)
    assert codes.shape == (40, 3) and codes.min() >= 0 and codes.max() < 8
    np.testing.assert_array_equal(codes, ConditioningRVQ(n_cond=3, cond_size=8).fit(X, random_state=2).encode(X))
    errs = [np.linalg.norm(X)]
    for i, x in enumerate(X):
        r = x.copy()
        for q, cb in enumerate(rvq.codebooks):
            best = min(range(len(cb)), key=lambda c: float(((r - cb[c]) ** 2).sum()))
            assert codes[i, q] == best
            r = r - cb[best]
    resid = X.copy()
    for q, cb in enumerate(rvq.codebooks):
        resid = resid - cb[codes[:, q]]
        errs.append(np.linalg.norm(resid))
    assert all(a > b for a, b in zip(errs, errs[1:]))
