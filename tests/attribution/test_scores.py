"""Independent references for per-example gradients, the projection and the scores.

Everything runs on a tiny :class:`~aria.models.transformer.MusicTransformer` (d_model 16, one
layer, 2 heads, d_ff 32, max_len 24; p = 15 477 attributed parameters), 12
training sequences and 3 queries of random tokens, some with PAD-masked tails;
queries carry a ``loss_mask`` that scores only their "generated" part.

What is compared with what
--------------------------
a. ``per_example_grads`` (vmap/grad) against a plain loop of
   ``torch.autograd.grad`` over one example at a time, with and without a
   ``loss_mask``.
b. ``BlockProjector`` against P materialized by stacking its blocks; seed
   determinism; the Johnson-Lindenstrauss scaling E|P^T g|^2 = |g|^2; its block
   cache changes no number. ``SJLTProjector`` against the dense matrix of its
   (index, sign) pairs: structure, seeding, JL scaling, and ``project_gradients``
   with it against autograd-loop gradients times that matrix.
c. ``project_gradients`` + ``score_blocks`` (``row_chunk`` not dividing N) for
   all four methods against numpy formulas on autograd-loop gradients and the
   stacked P: GradDot, Grad-Cos, TracIn over 3 checkpoints weighted by their
   learning rates, and TRAK over 2 models with ``np.linalg.inv``.
d. The same four methods against dattri 0.3.0 (``TracInAttributor`` for TracIn,
   GradDot and Grad-Cos; ``TRAKAttributor`` for TRAK) on the same model, with our
   per-example loss as dattri's loss *and* target function.

dattri conventions that differ from ours, and how (d) lines them up
-------------------------------------------------------------------
1. **Projection.** dattri draws its own P (``BasicProjector`` on CPU: N(0, 1)
   entries in column blocks of <= 100, seed ``proj_seed + 1000 * block +
   100000 * ensemble_id``, result divided by sqrt(proj_dim)) and cannot be handed
   a matrix. Two ways are used to line it up exactly:

   * ``proj_type="identity"``: dattri then uses the raw gradients (no rescaling),
     compared with our formulas on raw gradients (P = I, k = p). Used for
     TracIn, GradDot and Grad-Cos. (TRAK on raw gradients would need a p x p
     solve, 15 477^2, far too slow.)
   * ``proj_type="normal"``: dattri's own P is *materialized* by applying its
     projector to the identity basis (projection is linear, so projecting e_i
     gives row i of P exactly), and our ``score_blocks`` is fed G @ P_dattri.
     Used for TRAK and TracIn.
2. **One P per checkpoint.** dattri passes ``ensemble_id = checkpoint index`` to
   the projector, so each checkpoint / ensemble member gets a different P; aria
   uses one P (one ``seed``) for every checkpoint and model. The test
   materializes one P per checkpoint and builds each feature store with it.
3. **No projection off switch.** ``TracInAttributor`` projects even with
   ``projector_kwargs=None`` (it falls back to a 512-dim normal projection), so
   "no projection" means ``proj_type="identity"``. Its ``__init__`` also
   ``update``-s the *module-level* ``DEFAULT_PROJECTOR_KWARGS`` dict in place, so
   kwargs leak from one attributor to the next; every attributor here is given
   the full kwargs explicitly.
4. **TRAK gradient scaling.** dattri divides every gradient by sqrt(p) (its
   ``norm_scaler``, p = all trainable parameters). Then
   Phi/s ((Phi^T Phi)/s^2 + lam_d I)^{-1} phi_q/s = Phi (Phi^T Phi + lam_d s^2 I)^{-1}
   phi_q, so dattri's ``regularization`` lam_d equals our lambda / p.
5. **TRAK "Q" term.** dattri multiplies row j of the score matrix by
   Q_j = 1 - p_correct(z_j), averaged over checkpoints (the classification
   "one minus the probability of the correct label" reweighting); aria has no
   such term. With ``correct_probability_func`` returning 0, Q = 1 and the scores
   agree; a second run with p_correct = exp(-loss) checks that dattri's result
   is ours times (1 - mean_m exp(-L_m(z_j))).
6. **TRAK ensemble averaging.** dattri averages the per-model *scores*
   phi_q,m (Phi_m^T Phi_m + lam I)^{-1} Phi_m^T over checkpoints -- the same as
   aria's mean over models (not an average of features). Its result is
   (N, Q) like ours.
7. **Sign.** dattri differentiates ``loss_func`` for training samples and
   ``target_func`` for test samples; our scores use the loss gradient on both
   sides. With ``target_func = -loss`` (the f = -loss convention of §9) every
   dattri score flips sign; this is asserted for GradDot.
8. **Argument order.** ``TracInAttributor.attribute(train, test)`` but
   ``TRAKAttributor.attribute(test, train=None)``; TRAK here uses ``cache(train)``
   and then ``attribute(test)``.
9. **Precision.** dattri works in float32 throughout; aria's scores use float64
   products of float32 features. Comparisons use rtol 1e-4 plus an absolute
   tolerance of 1e-5 (1e-4 for TRAK) times the largest |score| (entries near 0).

Tolerances (u32 = 2^-24 = 6e-8): a float32 sum of n terms of random sign and rms sigma
has partial sums ~ sqrt(j) sigma, so its rounding error has sd ~ u32 sigma n / sqrt(6)
(sequential order; blocked BLAS orders do better), about sqrt(n) u32 / 6 of the largest
|result| (~2.5 sqrt(n) sigma). The projections and dattri's raw-gradient products sum over
p = 15 477 parameters: sqrt(p) u32 = 7e-6, ~1.2e-6 x max per sd, hence atol 1e-5 x max
(8 sd; measured <= 1.4e-6 x max under five CPU kernel settings); every entry's own
round-off (a few ulps of a 24-bit value, plus the float32 gradients' own ~1e-6) is well
inside rtol 1e-4. A damped solve multiplies the features' relative error by up to its
condition number kappa = 1 + lambda_max / lambda: TRAK's atol is 1e-4 x max. A real
bug (a missing term, a sign, a wrong scale) moves scores by O(1) of max.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dattri_adapter import dattri_P

from aria.attribution.projection import (
    BlockProjector,
    SJLTProjector,
    attributed_params,
    make_projector,
    per_example_grads,
    project_gradients,
)
from aria.attribution.scoring import score_blocks
from aria.models.transformer import ModelConfig, MusicTransformer, batch_loss, per_example_loss
from aria.symbolic.tokenize import PAD

CFG = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=24)
L = CFG.max_len
N_TRAIN, N_QUERY = 12, 3
PROMPT = 8  # query targets before this position are not scored
K = 32  # projection dim of part (c)
SEED = 7  # projection seed of part (c)
BLOCK_ROWS = 4000  # does not divide p: last block is partial
ROW_CHUNK = 5  # does not divide N_TRAIN
LRS = (0.5, 0.3, 0.1)  # TracIn checkpoint learning rates


# --------------------------------------------------------------------------- data
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Single-threaded torch: the tensors are tiny, and intra-op threads only add
    synchronisation (100x slower when another process holds the other core)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_data(n, rng, tails):
    """Random non-PAD tokens; rows in ``tails`` get a PAD-filled, masked-out tail."""
    tokens = rng.integers(0, PAD, size=(n, L)).astype(np.int64)
    mask = np.ones((n, L), dtype=bool)
    for i, keep in tails.items():
        mask[i, keep:] = False
        tokens[i, keep:] = PAD
    return tokens, mask


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    tr_tok, tr_mask = _random_data(N_TRAIN, rng, {1: 17, 4: 9, 10: 21})
    q_tok, q_mask = _random_data(N_QUERY, rng, {2: 19})
    q_lm = np.zeros((N_QUERY, L), dtype=bool)
    q_lm[:, PROMPT:] = True
    return {"tr_tok": tr_tok, "tr_mask": tr_mask, "q_tok": q_tok, "q_mask": q_mask, "q_lm": q_lm}


def _fresh_model(seed):
    torch.manual_seed(seed)
    return MusicTransformer(CFG)


def _train_steps(model, tokens, mask, steps, lr=1e-2):
    """A few Adam steps on the full batch (to get distinct checkpoints)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X, M = torch.as_tensor(tokens), torch.as_tensor(mask)
    for _ in range(steps):
        opt.zero_grad()
        batch_loss(model, X, M).backward()
        opt.step()
    return model


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tracin_ckpts(data):
    """Three checkpoints of one training run: after 0, 2 and 4 Adam steps."""
    model = _fresh_model(11)
    out = [_state(model)]
    for _ in range(2):
        _train_steps(model, data["tr_tok"], data["tr_mask"], 2)
        out.append(_state(model))
    return out


@pytest.fixture(scope="module")
def trak_models(data):
    """Two independently seeded models, each trained 3 steps."""
    return [_state(_train_steps(_fresh_model(s), data["tr_tok"], data["tr_mask"], 3)) for s in (21, 22)]


def _load(state):
    model = MusicTransformer(CFG)
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------- references
def loop_grads(model, tokens, mask, loss_mask=None) -> np.ndarray:
    """Reference gradients: one example at a time with ``torch.autograd.grad``."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(tokens)):
        t = torch.as_tensor(tokens[i : i + 1])
        m = torch.as_tensor(mask[i : i + 1])
        lm = None if loss_mask is None else torch.as_tensor(loss_mask[i : i + 1])
        loss = per_example_loss(model(t), t, m, lm)[0]
        gs = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in gs]).double().numpy())
    return np.stack(rows)


def stacked_P(proj: BlockProjector) -> np.ndarray:
    """P (p x k) materialized by stacking every block of the projector."""
    nb = -(-proj.p // proj.block_rows)
    return torch.cat([proj.block(b) for b in range(nb)]).double().numpy()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def unit(X):
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, n, out=np.zeros_like(X), where=n > 0)


def ref_trak(pairs, lam):
    """mean_m Phi_m (Phi_m^T Phi_m + lam I)^{-1} phi_{q,m}^T with ``np.linalg.inv``."""
    out = 0.0
    for Phi, Phq in pairs:
        inv = np.linalg.inv(Phi.T @ Phi + lam * np.eye(Phi.shape[1]))
        out = out + Phi @ inv @ Phq.T
    return out / len(pairs)


def assemble(method, feats, n, lam=None) -> np.ndarray:
    """Concatenate the row blocks of ``score_blocks``, checking their starts."""
    starts, blocks = [], []
    for start, block in score_blocks(
        method, feats, {"damping": {"rule": "absolute", "lambda": lam}}, row_chunk=ROW_CHUNK
    ):
        starts.append(start)
        blocks.append(block)
    assert starts == list(range(0, n, ROW_CHUNK))
    S = np.concatenate(blocks)
    assert S.dtype == np.float32 and S.shape[0] == n
    return S.astype(np.float64)


def close(actual, expected, rtol=1e-4, atol_rel=1e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol_rel * np.abs(expected).max())


# --------------------------------------------------------------------------- a. gradients
def test_per_example_loss_explicit(data, tracin_ckpts):
    """The loss every reference below differentiates: mean next-token CE over the real
    (mask True, non-PAD) targets selected by loss_mask, written out position by position."""
    model = _load(tracin_ckpts[0])
    tok, msk, lm = data["q_tok"], data["q_mask"], data["q_lm"]
    with torch.no_grad():
        logits = model(torch.as_tensor(tok)).double()
        got = per_example_loss(logits, torch.as_tensor(tok), torch.as_tensor(msk), torch.as_tensor(lm)).numpy()
    logp = torch.log_softmax(logits, -1).numpy()
    for i in range(N_QUERY):
        terms = [-logp[i, t - 1, tok[i, t]] for t in range(1, L) if msk[i, t] and tok[i, t] != PAD and lm[i, t]]
        assert 0 < len(terms) < L - 1
        assert got[i] == pytest.approx(np.mean(terms), rel=1e-10)


@pytest.mark.parametrize("use_loss_mask", [False, True])
def test_per_example_grads_match_autograd_loop(data, tracin_ckpts, use_loss_mask):
    model = _load(tracin_ckpts[1])
    tok, msk = data["q_tok"], data["q_mask"]
    lm = data["q_lm"] if use_loss_mask else None
    params = attributed_params(model)
    G = (
        per_example_grads(
            model, params, torch.as_tensor(tok), torch.as_tensor(msk), None if lm is None else torch.as_tensor(lm)
        )
        .double()
        .numpy()
    )
    ref = loop_grads(model, tok, msk, lm)
    assert G.shape == (N_QUERY, n_params(model))
    assert np.abs(ref).max() > 0
    # vmap vs a loop: the same float32 graph in batched kernels; each entry is a float32 sum over
    # <= 23 positions (sqrt(23) u32 = 3e-7 of its terms, < max|G| here): atol 1e-6 x max (measured
    # 9e-8 x max), rtol 1e-4
    close(G, ref, rtol=1e-4, atol_rel=1e-6)


def test_per_example_grads_train_set_and_masking(data, tracin_ckpts):
    """Whole training set (PAD tails included); a loss_mask changes the gradient and
    the content of a masked-out tail does not."""
    model = _load(tracin_ckpts[2])
    params = attributed_params(model)
    tok, msk = data["tr_tok"], data["tr_mask"]
    G = per_example_grads(model, params, torch.as_tensor(tok), torch.as_tensor(msk)).double().numpy()
    close(G, loop_grads(model, tok, msk), rtol=1e-4, atol_rel=1e-6)

    lm = np.zeros_like(msk)
    lm[:, PROMPT:] = True
    G_lm = (
        per_example_grads(model, params, torch.as_tensor(tok), torch.as_tensor(msk), torch.as_tensor(lm))
        .double()
        .numpy()
    )
    assert np.abs(G_lm - G).max() > 1e-3 * np.abs(G).max()

    tok2 = tok.copy()
    tok2[~msk] = 5  # garbage (non-PAD) tokens where mask is False
    G2 = per_example_grads(model, params, torch.as_tensor(tok2), torch.as_tensor(msk)).double().numpy()
    close(G2, G, rtol=1e-5, atol_rel=1e-7)  # masked positions enter only as exact zeros: same sums


# --------------------------------------------------------------------------- b. projector
def test_block_projector_equals_stacked_matrix():
    p, k = 1000, 16
    proj = BlockProjector(p, k, seed=3, block_rows=300)  # 4 blocks, the last of 100 rows
    P = stacked_P(proj)
    assert P.shape == (p, k)
    assert [proj.block(b).shape[0] for b in range(4)] == [300, 300, 300, 100]
    G = torch.randn(5, p, generator=torch.Generator().manual_seed(0))
    # float32 sums over p = 1000 (docstring, "Tolerances"): sd ~ sqrt(p) u32 / 6 = 3e-7 x max;
    # measured <= 3.5e-7 x max; atol 1e-6 x max covers entries near 0, rtol 1e-4 the rest
    close(proj(G).double().numpy(), G.double().numpy() @ P, rtol=1e-4, atol_rel=1e-6)
    # every block has its own random stream (no repeated rows across blocks)
    assert not np.allclose(P[:300], P[300:600], atol=1e-3)
    assert not np.allclose(P[900:], P[:100], atol=1e-3)
    # blocks can be rebuilt in any order
    assert torch.equal(proj.block(2), BlockProjector(p, k, seed=3, block_rows=300).block(2))


def test_block_projector_seed_determinism():
    p, k = 2000, 24
    a = stacked_P(BlockProjector(p, k, seed=5, block_rows=700))
    b = stacked_P(BlockProjector(p, k, seed=5, block_rows=700))
    c = stacked_P(BlockProjector(p, k, seed=6, block_rows=700))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    # different seeds give (nearly) uncorrelated matrices
    assert abs(np.corrcoef(a.ravel(), c.ravel())[0, 1]) < 0.05


def test_block_projector_jl_scaling():
    """Entries N(0, 1/k): k * E[P_ij^2] = 1, and |P^T g|^2 / |g|^2 ~ chi2_k / k."""
    p, k = 4096, 1024
    proj = BlockProjector(p, k, seed=1, block_rows=1500)
    P = stacked_P(proj)
    assert abs(k * np.mean(P**2) - 1.0) < 0.01  # sd of this is ~7e-4
    assert abs(np.mean(P)) * k**0.5 < 0.01
    g = torch.randn(8, p, generator=torch.Generator().manual_seed(2))
    ratio = (proj(g) ** 2).sum(1) / (g**2).sum(1)
    sd = (2 / k) ** 0.5  # sd of chi2_k / k
    assert torch.all((ratio - 1).abs() < 5 * sd), ratio
    assert abs(float(ratio.mean()) - 1) < 3 * sd


def test_block_projector_cache_changes_no_number():
    """Cached blocks are the regenerated ones: the same output, bit for bit, with any budget."""
    p, k, rows = 2500, 16, 600  # 5 blocks of 600 x 16 float32 = 38 400 bytes each
    G = torch.randn(4, p, generator=torch.Generator().manual_seed(4))
    none = BlockProjector(p, k, seed=9, block_rows=rows, cache_bytes=0)
    some = BlockProjector(p, k, seed=9, block_rows=rows, cache_bytes=2 * 38_400 + 5)
    every = BlockProjector(p, k, seed=9, block_rows=rows, cache_bytes=1 << 30)
    assert (none.n_cached, some.n_cached, every.n_cached) == (0, 2, 5)
    ref = none(G)
    for proj in (some, every):
        assert torch.equal(proj(G), ref) and torch.equal(proj(G), ref)  # second call reads the cache
    assert sorted(some._cache) == [0, 1] and sorted(every._cache) == [0, 1, 2, 3, 4]
    assert not none._cache


@pytest.mark.parametrize("s", [1, 3])
def test_sjlt_projector_structure_and_product(s):
    """Every row of P has s distinct nonzeros of magnitude 1/sqrt(s), one per output block;
    applying the projector equals the product with the dense matrix built from its entries."""
    p, k = 3000, 40
    proj = SJLTProjector(p, k, seed=11, s=s)
    idx, sgn = proj.index.numpy(), proj.sign.double().numpy()
    assert idx.shape == (p, s) and sgn.shape == (p, s)
    edges = np.arange(s + 1) * k // s
    for j in range(s):
        assert np.all((idx[:, j] >= edges[j]) & (idx[:, j] < edges[j + 1]))
    assert np.allclose(np.abs(sgn), 1 / np.sqrt(s))
    # a dense P from the (index, sign) pairs, built without the class
    P = np.zeros((p, k))
    for j in range(s):
        P[np.arange(p), idx[:, j]] += sgn[:, j]
    assert np.array_equal(P, proj.matrix())
    assert np.allclose((P**2).sum(1), 1.0) and np.all((P != 0).sum(1) == s)
    # balanced: every output coordinate receives about p*s/k parameters, signs about half +
    counts = (P != 0).sum(0)
    assert counts.min() > 0.6 * p * s / k and counts.max() < 1.4 * p * s / k
    assert abs((sgn > 0).mean() - 0.5) < 0.05
    G = torch.randn(5, p, generator=torch.Generator().manual_seed(0))
    # index_add_ sums n = p s / k <= 225 float32 terms of rms 1/sqrt(s) in sequence: sd ~ u32 n
    # sigma / sqrt(6) = 3e-6 ~ 1.2e-7 x max (max ~ 25); atol 1e-6 x max = 8 sd (measured <= 3 sd)
    close(proj(G).double().numpy(), G.double().numpy() @ P, rtol=1e-5, atol_rel=1e-6)


def test_sjlt_seeding_and_jl_scaling():
    p, k = 4096, 1024
    a, b = SJLTProjector(p, k, seed=5, s=2), SJLTProjector(p, k, seed=5, s=2)
    c = SJLTProjector(p, k, seed=6, s=2)
    assert torch.equal(a.index, b.index) and torch.equal(a.sign, b.sign)
    assert (a.index != c.index).float().mean() > 0.9
    # E|P^T g|^2 = |g|^2: for Gaussian g the ratio's sd is about sqrt(2/k) (s-independent to first order)
    g = torch.randn(64, p, generator=torch.Generator().manual_seed(2))
    for proj in (a, SJLTProjector(p, k, seed=1, s=1)):
        ratio = (proj(g) ** 2).sum(1) / (g**2).sum(1)
        sd = (2 / k) ** 0.5
        assert torch.all((ratio - 1).abs() < 5 * sd), ratio
        assert abs(float(ratio.mean()) - 1) < 4 * sd / 64**0.5
    with pytest.raises(ValueError, match="1 <= s <= k"):
        SJLTProjector(10, 4, seed=0, s=5)
    with pytest.raises(ValueError, match="unknown projection type 'fjlt'"):
        make_projector(10, 4, kind="fjlt", seed=0)


def test_project_gradients_sjlt_equals_G_times_P(data, tracin_ckpts):
    model = _load(tracin_ckpts[1])
    p = n_params(model)
    P = SJLTProjector(p, K, seed=SEED, s=2).matrix()
    kw = dict(k=K, seed=SEED, batch_size=5, projection="sjlt", sjlt_s=2)
    f = project_gradients(model, data["q_tok"], data["q_mask"], data["q_lm"], **kw)
    ref = loop_grads(model, data["q_tok"], data["q_mask"], data["q_lm"]) @ P
    close(f, ref, atol_rel=1e-5)
    # a projector handed in is used as is (one P for train and queries), and must fit the model
    proj = make_projector(p, K, kind="sjlt", seed=SEED, sjlt_s=2)
    assert np.array_equal(
        project_gradients(
            model, data["q_tok"], data["q_mask"], data["q_lm"], k=K, seed=0, batch_size=5, projector=proj
        ),
        f,
    )
    with pytest.raises(ValueError, match="the model needs"):
        project_gradients(
            model, data["q_tok"], data["q_mask"], k=K, seed=0, projector=make_projector(p + 1, K, kind="sjlt", seed=0)
        )


# --------------------------------------------------------------------------- c. scores vs numpy
def _aria_feats(state, data, *, k=K, seed=SEED, batch_size=5):
    model = _load(state)
    kw = dict(k=k, seed=seed, batch_size=batch_size, block_rows=BLOCK_ROWS)
    return {
        "train": project_gradients(model, data["tr_tok"], data["tr_mask"], **kw),
        "query": project_gradients(model, data["q_tok"], data["q_mask"], data["q_lm"], **kw),
    }


def _ref_feats(state, data, P):
    model = _load(state)
    return (
        loop_grads(model, data["tr_tok"], data["tr_mask"]) @ P,
        loop_grads(model, data["q_tok"], data["q_mask"], data["q_lm"]) @ P,
    )


@pytest.fixture(scope="module")
def ref_P(tracin_ckpts):
    p = n_params(_load(tracin_ckpts[0]))
    assert p % BLOCK_ROWS != 0
    return stacked_P(BlockProjector(p, K, seed=SEED, block_rows=BLOCK_ROWS))


def test_project_gradients_equals_G_times_P(data, tracin_ckpts, ref_P):
    f = _aria_feats(tracin_ckpts[1], data)
    Phi, Phq = _ref_feats(tracin_ckpts[1], data, ref_P)
    assert f["train"].dtype == np.float32 and f["train"].shape == (N_TRAIN, K)
    close(f["train"], Phi, atol_rel=1e-5)
    close(f["query"], Phq, atol_rel=1e-5)


def test_graddot_and_gradcos_vs_numpy(data, tracin_ckpts, ref_P):
    f = _aria_feats(tracin_ckpts[2], data)
    Phi, Phq = _ref_feats(tracin_ckpts[2], data, ref_P)
    close(assemble("graddot", [f], N_TRAIN), Phi @ Phq.T)
    cos = assemble("gradcos", [f], N_TRAIN)
    close(cos, unit(Phi) @ unit(Phq).T)
    assert np.all(np.abs(cos) <= 1 + 1e-6)


def test_tracin_vs_numpy(data, tracin_ckpts, ref_P):
    feats, ref = [], 0.0
    for lr, st in zip(LRS, tracin_ckpts):
        feats.append({**_aria_feats(st, data), "lr": lr})
        Phi, Phq = _ref_feats(st, data, ref_P)
        ref = ref + lr * Phi @ Phq.T
    S = assemble("tracin", feats, N_TRAIN)
    close(S, ref)
    # the checkpoints really differ: dropping one changes the result
    assert not np.allclose(S, assemble("tracin", feats[:2], N_TRAIN), rtol=1e-2)


def test_trak_vs_numpy(data, trak_models, ref_P):
    feats = [_aria_feats(st, data) for st in trak_models]
    pairs = [_ref_feats(st, data, ref_P) for st in trak_models]
    lam = 0.05 * np.trace(pairs[0][0].T @ pairs[0][0]) / K
    S = assemble("trak", feats, N_TRAIN, lam=lam)
    # both solve in float64; they differ by the float32 features' ~1e-6 relative error times the
    # sensitivity of Phi (Phi^T Phi + lam I)^-1, ~sqrt(kappa) <= 25 (kappa <= 1 + K / 0.05 = 641):
    # ~2.5e-5 x max at worst (measured <= 1.8e-6 x max); atol 1e-4 x max
    close(S, ref_trak(pairs, lam), rtol=1e-4, atol_rel=1e-4)
    # averaging over models, not just model 0
    assert not np.allclose(S, ref_trak(pairs[:1], lam), rtol=1e-2)


# --------------------------------------------------------------------------- d. vs dattri
def _dattri_task(dattri_task, states, *, target_sign=1.0):
    """AttributionTask whose loss is aria's per-example loss of one (t, m, lm) example."""
    model = MusicTransformer(CFG)
    torch_fc = torch.func.functional_call

    def loss(params, batch):
        t, m, lm = batch
        logits = torch_fc(model, params, (t[None],))
        return per_example_loss(logits, t[None], m[None], lm[None])[0]

    def target(params, batch):
        return target_sign * loss(params, batch)

    return dattri_task.AttributionTask(loss_func=loss, target_func=target, model=model, checkpoints=list(states)), loss


def _loaders(data, batch_size=5):
    from torch.utils.data import DataLoader, TensorDataset

    tr = TensorDataset(
        torch.as_tensor(data["tr_tok"]), torch.as_tensor(data["tr_mask"]), torch.ones(N_TRAIN, L, dtype=torch.bool)
    )
    qu = TensorDataset(torch.as_tensor(data["q_tok"]), torch.as_tensor(data["q_mask"]), torch.as_tensor(data["q_lm"]))
    return (DataLoader(tr, batch_size=batch_size, shuffle=False), DataLoader(qu, batch_size=2, shuffle=False))


def _aria_grads(state, data):
    """Raw gradients from aria's per_example_grads (the function under test)."""
    model = _load(state)
    prm = attributed_params(model)
    t = lambda x: torch.as_tensor(data[x])  # noqa: E731
    return (
        per_example_grads(model, prm, t("tr_tok"), t("tr_mask")).double().numpy(),
        per_example_grads(model, prm, t("q_tok"), t("q_mask"), t("q_lm")).double().numpy(),
    )


@pytest.fixture(scope="module")
def dattri_mods():
    pytest.importorskip("dattri")
    import dattri.algorithm.tracin as tracin
    import dattri.algorithm.trak as trak
    import dattri.task as task

    return tracin, trak, task


@pytest.fixture(scope="module")
def grads_ckpts(data, tracin_ckpts):
    return [_aria_grads(st, data) for st in tracin_ckpts]


IDENTITY = {"proj_type": "identity", "proj_dim": 1, "proj_max_batch_size": 32, "proj_seed": 0, "device": "cpu"}


def _tracin(dattri_mods, data, states, weights, normalized, proj, target_sign=1.0):
    tracin, _, task = dattri_mods
    t, _ = _dattri_task(task, states, target_sign=target_sign)
    att = tracin.TracInAttributor(
        task=t, weight_list=torch.tensor(weights), device="cpu", normalized_grad=normalized, projector_kwargs=dict(proj)
    )
    tr, qu = _loaders(data)
    return att.attribute(tr, qu).double().numpy()


@pytest.mark.parametrize("method", ["graddot", "gradcos"])
def test_graddot_gradcos_vs_dattri_raw_gradients(dattri_mods, data, tracin_ckpts, grads_ckpts, method):
    """dattri GradDot / Grad-Cos = TracIn, one checkpoint, weight 1, identity projection."""
    G, Gq = grads_ckpts[2]
    ours = assemble(method, [{"train": G, "query": Gq}], N_TRAIN)
    theirs = _tracin(dattri_mods, data, tracin_ckpts[2:], [1.0], method == "gradcos", IDENTITY)
    close(theirs, ours)
    if method == "graddot":
        flipped = _tracin(dattri_mods, data, tracin_ckpts[2:], [1.0], False, IDENTITY, target_sign=-1.0)
        close(flipped, -ours)


def test_tracin_vs_dattri_raw_gradients(dattri_mods, data, tracin_ckpts, grads_ckpts):
    feats = [{"train": G, "query": Gq, "lr": lr} for (G, Gq), lr in zip(grads_ckpts, LRS)]
    ours = assemble("tracin", feats, N_TRAIN)
    theirs = _tracin(dattri_mods, data, tracin_ckpts, list(LRS), False, IDENTITY)
    close(theirs, ours)


def test_tracin_vs_dattri_projected(dattri_mods, data, tracin_ckpts, grads_ckpts):
    """dattri's normal projection, one P per checkpoint (ensemble_id = checkpoint)."""
    k = 16
    p = grads_ckpts[0][0].shape[1]
    feats = []
    for c, ((G, Gq), lr) in enumerate(zip(grads_ckpts, LRS)):
        P = dattri_P(p, k, ensemble_id=c)
        feats.append({"train": G @ P, "query": Gq @ P, "lr": lr})
    proj = {"proj_type": "normal", "proj_dim": k, "proj_max_batch_size": 32, "proj_seed": 0, "device": "cpu"}
    theirs = _tracin(dattri_mods, data, tracin_ckpts, list(LRS), False, proj)
    close(theirs, assemble("tracin", feats, N_TRAIN))
    # the per-checkpoint P matters: one shared P gives different scores
    P0 = dattri_P(p, k, ensemble_id=0)
    shared = [{"train": G @ P0, "query": Gq @ P0, "lr": lr} for (G, Gq), lr in zip(grads_ckpts, LRS)]
    assert not np.allclose(theirs, assemble("tracin", shared, N_TRAIN), rtol=1e-2)


@pytest.fixture(scope="module")
def trak_setup(data, trak_models):
    k = 8  # < N_TRAIN: Phi^T Phi full rank
    grads = [_aria_grads(st, data) for st in trak_models]
    p = grads[0][0].shape[1]
    feats = []
    for m, (G, Gq) in enumerate(grads):
        P = dattri_P(p, k, ensemble_id=m)
        feats.append({"train": G @ P, "query": Gq @ P})
    lam = 0.1 * np.trace(feats[0]["train"].T @ feats[0]["train"]) / k
    ours = assemble("trak", feats, N_TRAIN, lam=lam)
    return {"k": k, "p": p, "lam": lam, "ours": ours}


def _trak(dattri_mods, data, states, setup, prob):
    _, trak, task = dattri_mods
    t, loss = _dattri_task(task, states)
    proj = {"proj_type": "normal", "proj_dim": setup["k"], "proj_max_batch_size": 32, "proj_seed": 0, "device": "cpu"}
    att = trak.TRAKAttributor(
        task=t,
        correct_probability_func=prob(loss),
        device="cpu",
        projector_kwargs=proj,
        regularization=setup["lam"] / setup["p"],
    )
    tr, qu = _loaders(data)
    att.cache(tr)
    return att.attribute(qu).double().numpy()


def test_trak_vs_dattri(dattri_mods, data, trak_models, trak_setup):
    """Q = 1 (p_correct = 0); regularization lam / p undoes dattri's 1/sqrt(p) scaling."""
    theirs = _trak(
        dattri_mods, data, trak_models, trak_setup, lambda loss: lambda params, batch: 0.0 * loss(params, batch)
    )
    # dattri: float32 projection over p (sd ~1.2e-6 x max, docstring) and a float32 damped inverse,
    # kappa <= 1 + k / 0.1 = 81: kappa u32 = 5e-6, amplified features ~sqrt(kappa) x 1e-6 (measured
    # <= 3.7e-6 x max); atol 1e-4 x max
    close(theirs, trak_setup["ours"], rtol=1e-4, atol_rel=1e-4)


def test_trak_dattri_q_term(dattri_mods, data, trak_models, trak_setup):
    """With p_correct = exp(-loss), dattri = ours * (1 - mean_m exp(-L_m(z_j)))."""
    theirs = _trak(
        dattri_mods, data, trak_models, trak_setup, lambda loss: lambda params, batch: torch.exp(-loss(params, batch))
    )
    X, M = torch.as_tensor(data["tr_tok"]), torch.as_tensor(data["tr_mask"])
    with torch.no_grad():
        losses = [per_example_loss(_load(st)(X), X, M).double().numpy() for st in trak_models]
    Q = 1 - np.mean([np.exp(-lo) for lo in losses], axis=0)
    assert np.all((Q > 0) & (Q < 1))
    close(theirs, trak_setup["ours"] * Q[:, None], rtol=1e-4, atol_rel=1e-4)
    assert not np.allclose(theirs, trak_setup["ours"], rtol=1e-3)
