"""Factored per-example gradients (LoGra, FactGraSS) against autograd's per-example
weight gradients, and the SJLT against its definition."""

import numpy as np
import pytest
import torch
from conftest import token_batch

from aria.attribution.factgrass import SJLT, factgrass_masks
from aria.attribution.factored import factor_batch, kfac_covariance, project_factored, select_layers, top_eigenvectors
from aria.attribution.logra import logra_projections
from aria.attribution.projection import attributed_params, per_example_grads
from aria.models.transformer import ModelConfig, MusicTransformer

torch.manual_seed(0)
CFG = ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=12, max_len=10, vocab_size=13)


def _model():
    torch.manual_seed(0)
    return MusicTransformer(CFG).eval()


def _data():
    return token_batch(4, 10, 13)  # a padded example (1) and a query scored after its prompt (2)


def autograd_layer_grads(model, tokens, mask, loss_mask):
    """name -> (B, out, in+1): each example's weight gradient with the bias as last column."""
    params = attributed_params(model)
    G = per_example_grads(model, params, torch.as_tensor(tokens), torch.as_tensor(mask), torch.as_tensor(loss_mask))
    offs, o = {}, 0
    for n, p in params.items():
        offs[n] = (o, o + p.numel(), p.shape)
        o += p.numel()
    out = {}
    for name in select_layers(model):
        a, b, shp = offs[f"{name}.weight"]
        W = G[:, a:b].reshape(-1, *shp)
        a, b, _ = offs[f"{name}.bias"]
        out[name] = torch.cat([W, G[:, a:b][..., None]], dim=-1).double().numpy()
    return out


def test_logra_features_equal_projected_autograd_gradients():
    model = _model()
    tokens, mask, loss_mask = _data()
    ref = autograd_layer_grads(model, tokens, mask, loss_mask)
    layers = select_layers(model)
    assert list(layers) == ["blocks.0.qkv", "blocks.0.proj", "blocks.0.ff1", "blocks.0.ff2", "head"]
    # random projections: g~ = P_out^T G P_in per layer and example
    proj = logra_projections(layers, k_in=3, k_out=4, init="random", random_state=1)
    feats, layout = project_factored(
        model,
        tokens,
        mask,
        loss_mask,
        method="logra",
        params=dict(k_in=3, k_out=4, init="random", seed=1),
        batch_size=3,
    )
    for sl in layout:
        P_in, P_out = proj[sl["name"]]
        want = np.einsum("ok,bou,ui->bki", P_out, ref[sl["name"]], P_in).reshape(len(tokens), -1)
        # float32 contractions over positions and both projections: error ~ u32 sum|terms|, and
        # sum|terms| <= 4.3 here (max |feature| 1.2): u32 sum|terms| <= 2.6e-7, measured <= 1 of it;
        # atol 1e-6 ~ 4 u32 sum|terms|, rtol 1e-4
        np.testing.assert_allclose(feats[:, sl["start"] : sl["stop"]], want, rtol=1e-4, atol=1e-6)
    # identity projections give the full weight gradient itself
    fac = factor_batch(model, layers, torch.as_tensor(tokens), torch.as_tensor(mask), torch.as_tensor(loss_mask))
    for n, (x, d) in fac.items():
        G = torch.einsum("bto,bti->boi", d, x).double().numpy()
        # two float32 sums over T = 10 positions of d_t x_t^T: worst gamma_T u32 sum|terms| with
        # sum|terms| <= 1.5 max|G| here, i.e. <= 1e-6 max|G| (measured 8e-8 max|G|)
        np.testing.assert_allclose(G, ref[n], rtol=1e-4, atol=1e-6 * np.abs(ref[n]).max())
    # the padded example's padding contributes nothing: its gradient equals that of its prefix alone
    short = autograd_layer_grads(model, tokens[1:2, :6], mask[1:2, :6], loss_mask[1:2, :6])
    for n in ref:  # the same T-term sums (padding adds exact zeros): as above
        np.testing.assert_allclose(ref[n][1], short[n][0], rtol=1e-4, atol=1e-6 * np.abs(ref[n]).max())


def test_logra_kfac_init_uses_the_leading_eigenvectors():
    model = _model()
    tokens, mask, loss_mask = _data()
    cov = kfac_covariance(model, tokens, mask, None, batch_size=2)
    # brute force E[x x^T] of the head layer over real tokens
    fac = factor_batch(model, select_layers(model), torch.as_tensor(tokens), torch.as_tensor(mask), None)
    x = fac["head"][0].double().numpy()[mask]
    # kfac_covariance reruns the float32 forward in batches of 2 (4 here): the activations may
    # differ by a few u32 with the kernel chosen per shape (MKL_CBWR=COMPATIBLE: 2.6e-8 relative
    # in A), then enter float64 means of 37 products; rtol 1e-6 = 16 u32, atol 1e-6 x max near 0
    A_ref = x.T @ x / mask.sum()
    np.testing.assert_allclose(cov["head"]["A"], A_ref, rtol=1e-6, atol=1e-6 * np.abs(A_ref).max())
    d = fac["head"][1].double().numpy().reshape(-1, 13)
    S_ref = d.T @ d / mask.sum()
    np.testing.assert_allclose(cov["head"]["S"], S_ref, rtol=1e-6, atol=1e-6 * np.abs(S_ref).max())
    P_in, P_out = logra_projections(select_layers(model), k_in=2, k_out=3, covariance=cov)["head"]
    w, V = np.linalg.eigh(cov["head"]["A"])
    np.testing.assert_allclose(np.abs(P_in), np.abs(V[:, ::-1][:, :2]), atol=1e-8)
    np.testing.assert_allclose(P_in.T @ P_in, np.eye(2), atol=1e-10)
    assert P_out.shape == (13, 3)
    np.testing.assert_allclose(top_eigenvectors(np.diag([1.0, 3.0, 2.0]), 2), [[0, 0], [1, 0], [0, 1]])


def test_factgrass_equals_mask_outer_product_sjlt_of_autograd_gradient():
    model = _model()
    tokens, mask, loss_mask = _data()
    ref = autograd_layer_grads(model, tokens, mask, loss_mask)
    params = dict(k=5, blowup=4, mask="random", seed=3)
    feats, layout = project_factored(model, tokens, mask, loss_mask, method="factgrass", params=params)
    masks = factgrass_masks(select_layers(model), k=5, blowup=4, random_state=3)
    for j, sl in enumerate(layout):
        keep_in, keep_out = masks[sl["name"]]
        g = ref[sl["name"]]
        assert len(keep_in) == min(5, g.shape[2]) and len(keep_out) == min(5, g.shape[1])
        sub = g[:, keep_out][:, :, keep_in].reshape(len(tokens), -1)
        S = SJLT(len(keep_in) * len(keep_out), 5, random_state=3 * 1_000_003 + j).matrix()
        # +-1 sums of ~5 kept float32 gradient entries, each off by <= 3e-8 (above; max|g| < 0.5):
        # <= 2e-7 at worst; atol 1e-6, rtol 1e-4 (measured 2.5e-8)
        np.testing.assert_allclose(feats[:, sl["start"] : sl["stop"]], sub @ S, rtol=1e-4, atol=1e-6)


def test_sjlt_is_seeded_one_signed_hit_per_coordinate_and_preserves_norms():
    a, b = SJLT(1000, 64, random_state=7), SJLT(1000, 64, random_state=7)
    np.testing.assert_array_equal(a.matrix(), b.matrix())
    M = a.matrix()
    assert (np.count_nonzero(M, axis=1) == 1).all() and set(np.unique(M[M != 0])) == {-1.0, 1.0}
    V = torch.as_tensor(np.random.default_rng(0).normal(size=(200, 1000)))
    np.testing.assert_allclose(a(V).numpy(), V.numpy() @ M, atol=1e-10)
    # JL: for k = 64 the squared-norm ratio concentrates around 1 with relative sd about
    # sqrt(2/k) = 0.18; every one of 200 random vectors lies within 5 sd (0.9) of 1, and the
    # mean over them within 4 standard errors (4 * 0.18 / sqrt(200) = 0.05).
    ratio = (a(V) ** 2).sum(1).numpy() / (V**2).sum(1).numpy()
    assert np.abs(ratio - 1).max() < 0.9 and abs(ratio.mean() - 1) < 0.05


def test_layer_selection_and_skipped_modules(caplog):
    model = _model()
    assert list(select_layers(model, "attention")) == ["blocks.0.qkv", "blocks.0.proj"]
    assert list(select_layers(model, "mlp")) == ["blocks.0.ff1", "blocks.0.ff2"]
    with caplog.at_level("INFO", logger="aria"):
        select_layers(model)
    assert "embed" in caplog.text and "ln1" in caplog.text
    with pytest.raises(ValueError, match="layers must be one of"):
        select_layers(model, "conv")


def test_a_layer_called_twice_is_refused():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 4)
            self.fc = torch.nn.Linear(4, 4)
            self.head = torch.nn.Linear(4, 5)

        def forward(self, t):
            return self.head(self.fc(self.fc(self.embed(t))))

    m = Twice()
    t = torch.randint(0, 5, (2, 6))
    with pytest.raises(RuntimeError, match="fc runs more than once"):
        factor_batch(m, select_layers(m), t, torch.ones_like(t, dtype=torch.bool))
    # excluding it works: only the head is hooked
    fac = factor_batch(m, {"head": m.head}, t, torch.ones_like(t, dtype=torch.bool))
    assert fac["head"][0].shape == (2, 6, 5) and fac["head"][1].shape == (2, 6, 5)


def test_a_users_own_model_class(caplog):
    """The adapter's own model (tests/custom_stage_model.py): its one nn.Linear is hooked,
    its embedding is named as skipped, and LoGra with identity projections gives the
    autograd weight gradient (with bias column) of each example's own loss."""
    from custom_stage_model import BagOfTokens

    from aria.models.transformer import per_example_loss

    torch.manual_seed(1)
    m = BagOfTokens(vocab_size=7, dim=5).eval()
    tokens = torch.randint(0, 7, (3, 8))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    with caplog.at_level("INFO", logger="aria"):
        layers = select_layers(m)
    assert list(layers) == ["head"] and "embed" in caplog.text
    proj = {"head": (np.eye(6), np.eye(7))}
    from aria.attribution.logra import logra_features

    feats = logra_features(factor_batch(m, layers, tokens, mask), proj).double().numpy()
    for b in range(3):
        m.zero_grad()
        per_example_loss(m(tokens[b : b + 1]), tokens[b : b + 1], mask[b : b + 1])[0].backward()
        G = torch.cat([m.head.weight.grad, m.head.bias.grad[:, None]], dim=1).double().numpy()
        # two float32 sums over 8 positions: <= gamma_8 u32 sum|terms| < 1e-6 max|G| near 0 (as in
        # the first test); rtol 1e-5 = 80 ulps for the rest (measured 7e-9 = 3e-8 max|G|)
        np.testing.assert_allclose(feats[b], G.reshape(-1), rtol=1e-5, atol=1e-6 * np.abs(G).max())


@pytest.mark.parametrize("method", ["trak", "nope"])
def test_project_factored_names_a_method_without_its_own_projection(method):
    """A registered method without a featurizer (TRAK) and an unknown name are both refused by name."""
    tokens = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match=f"unknown factored method '{method}'"):
        project_factored(MusicTransformer(CFG), tokens, np.ones_like(tokens, bool), method=method, params={})
