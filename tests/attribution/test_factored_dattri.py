"""LoGra and FactGraSS against dattri 0.3.0's attributors on the same tiny model.

Conventions lined up here (docs/methods.md, "Against dattri 0.3.0"):
- dattri's per-example gradient is B x the gradient of the batch-mean loss, which is the
  gradient of the example's mean token loss when every token is real: Aria's
  per_example_loss with full masks. Its test gradients use plain cross-entropy on
  ``model(x)`` of shape (B, V, T), so the model is wrapped to predict tokens 1..L-1.
- dattri projects with Gaussian matrices N(0, 1/k) seeded 10000 * module index (+1 on the
  input side); Aria's LoGra uses KFAC eigenvectors (or its own Gaussian): the test feeds
  dattri's matrices to Aria's factored gradients.
- On CPU dattri's FactGraSS replaces the SJLT by a dense Gaussian; the test feeds that
  matrix in place of Aria's SJLT (the mask and outer product are Aria's).
- dattri damps each layer with damping * tr(H)/d: the same as Aria's alpha * mean eigenvalue.
"""

import numpy as np
import pytest
import torch
from dattri_adapter import DattriView, dattri_loss
from torch.utils.data import DataLoader, TensorDataset

from aria.attribution.factgrass import factgrass_features
from aria.attribution.factored import factor_batch, select_layers
from aria.attribution.linalg import layerwise_influence_operators
from aria.attribution.logra import logra_features
from aria.models.transformer import ModelConfig, MusicTransformer

dattri = pytest.importorskip("dattri")


def _gauss(d, k, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.empty(d, k).normal_(generator=g) / k**0.5).double().numpy()


def _perm_mask(d, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(d, generator=g)[: min(k, d)].sort()[0].numpy()


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    inner = MusicTransformer(ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=12, max_len=7, vocab_size=11)).eval()
    wrapped = DattriView(inner).eval()
    g = torch.Generator().manual_seed(1)
    seqs = torch.randint(1, 11, (20, 7), generator=g)
    train, test = seqs[:16], seqs[16:]
    module_id = {n: i for i, (n, _) in enumerate(wrapped.named_modules())}
    layers = select_layers(inner)
    full = torch.ones_like(seqs, dtype=torch.bool)
    fac = {
        "train": factor_batch(inner, layers, train, full[:16]),
        "test": factor_batch(inner, layers, test, full[16:]),
    }
    return dict(inner=inner, wrapped=wrapped, train=train, test=test, module_id=module_id, layers=layers, fac=fac)


def _dattri_scores(setup, cls, tmp_path, **kw):
    from dattri.task import AttributionTask

    torch._dynamo.config.disable = True  # dattri compiles its compressor; eager gives the same numbers, faster
    try:
        state = {k: v.clone() for k, v in setup["wrapped"].state_dict().items()}
        task = AttributionTask(loss_func=dattri_loss, model=setup["wrapped"], checkpoints=state)
        dl = lambda x, bs: DataLoader(TensorDataset(x, x[:, 1:]), batch_size=bs, shuffle=False)  # noqa: E731
        attr = cls(task, hessian="eFIM", device="cpu", offload="cpu", cache_dir=str(tmp_path), **kw)
        attr.cache(dl(setup["train"], 4))
        return attr.attribute(dl(setup["train"], 4), dl(setup["test"], 2)).double().numpy()
    finally:
        torch._dynamo.config.disable = False


def _aria_scores(feats_train, feats_test, widths, alpha):
    layout, s = [], 0
    for w in widths:
        layout.append({"start": s, "stop": s + w})
        s += w
    rows, ops = layerwise_influence_operators(
        feats_train, feats_test, layout, damping={"rule": "relative", "alpha": alpha}
    )
    return sum(r @ o for r, o in zip(rows, ops))


def test_logra_matches_dattri(setup, tmp_path):
    from dattri.algorithm import LoGraAttributor

    k = 4
    proj = {}
    for n, layer in setup["layers"].items():
        base = 10000 * setup["module_id"][f"inner.{n}"]
        proj[n] = (_gauss(layer.in_features + 1, k, base + 1), _gauss(layer.out_features, k, base))
    ftr = logra_features(setup["fac"]["train"], proj).double().numpy()
    fte = logra_features(setup["fac"]["test"], proj).double().numpy()
    ours = _aria_scores(ftr, fte, [k * k] * len(proj), alpha=0.1)
    theirs = _dattri_scores(setup, LoGraAttributor, tmp_path, damping=0.1, proj_dim=k * k)
    assert theirs.shape == ours.shape == (16, 4)
    print(f"LoGra vs dattri: max rel diff {np.abs(theirs - ours).max() / np.abs(ours).max():.2e}")
    # dattri inverts each damped 16 x 16 block in float32 (Cholesky): forward error ~ kappa u32,
    # kappa <= 1 + 16 / alpha = 161 (92 for these blocks): 5.5e-6 of the norm; our side is float64
    # on the same float32 features. atol 1e-5 x max (measured 5e-7 x max), rtol 1e-4.
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5 * np.abs(ours).max())


def test_factgrass_matches_dattri_with_its_dense_cpu_projection(setup, tmp_path):
    from dattri.algorithm import FactGraSSAttributor

    k, blowup = 16, 4
    kk = int((k * blowup) ** 0.5)
    masks, dense = {}, {}
    for n, layer in setup["layers"].items():
        base = 10000 * setup["module_id"][f"inner.{n}"]
        masks[n] = (_perm_mask(layer.in_features + 1, kk, base + 1), _perm_mask(layer.out_features, kk, base))
        R = torch.as_tensor(_gauss(len(masks[n][0]) * len(masks[n][1]), k, base + 1))
        dense[n] = lambda V, R=R: V @ R.to(V.dtype)
    ftr = factgrass_features(setup["fac"]["train"], masks, dense).double().numpy()
    fte = factgrass_features(setup["fac"]["test"], masks, dense).double().numpy()
    ours = _aria_scores(ftr, fte, [k] * len(masks), alpha=0.1)
    theirs = _dattri_scores(setup, FactGraSSAttributor, tmp_path, damping=0.1, proj_dim=k, blowup_factor=blowup)
    print(f"FactGraSS vs dattri: max rel diff {np.abs(theirs - ours).max() / np.abs(ours).max():.2e}")
    # as for LoGra: kappa <= 80 for these blocks, kappa u32 = 5e-6 (measured 4e-7 x max)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5 * np.abs(ours).max())
