"""The latent DiT and unlearning on it (docs/spec.md §8; the second paper's own setting).

References are independent of the code under test: numpy for the v-objective, autograd one draw
at a time for the Fisher, diffusers' own attention processor, the explicit parameter names of
diffusers' Stable Audio transformer, and the first-order expansion of τ.
"""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from aria.attribution.unlearning import (  # noqa: E402
    MASK_STRATEGIES,
    diagonal_fisher,
    example_generator,
    latent_scores,
    target_masks,
    unlearn,
)
from aria.models.diffusion import LAYER_GROUPS, LatentDiT, VLoss, alpha_sigma, latent_batches, sample  # noqa: E402

SIZES = dict(
    latent_channels=3, max_frames=12, num_layers=2, num_heads=2, head_dim=8, kv_heads=1,
    text_dim=5, cond_dim=8, time_proj_dim=8, max_seconds=10.0,
)  # fmt: skip


def _model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return LatentDiT(**SIZES).to(dtype).eval()


def _data(n=5, seed=1, real=(12, 7, 12, 4, 9)):
    """N padded items: frames past ``real[i]`` are zero and unmasked."""
    rng = np.random.default_rng(seed)
    C, Fr = SIZES["latent_channels"], SIZES["max_frames"]
    x0 = rng.normal(size=(n, C, Fr))
    mask = np.zeros((n, Fr), bool)
    for i in range(n):
        mask[i, : real[i]] = True
    x0 *= mask[:, None, :]
    return {
        "x0": x0,
        "mask": mask,
        "text": rng.normal(size=(n, 4, SIZES["text_dim"])),
        "text_mask": np.ones((n, 4), bool),
        "seconds_start": np.zeros(n),
        "seconds_total": np.asarray(real[:n], float) * 0.5,
        "ids": np.asarray([f"z{i}" for i in range(n)]),
    }


def _item(data, i):
    return {k: v[i : i + 1] for k, v in data.items()}


def _one_batch(data, *, use_mask=True, dtype=torch.float64):
    (b,) = latent_batches(data, ids=data["ids"], use_mask=use_mask, batch_size=len(data["ids"]), dtype=dtype)
    return b


# --------------------------------------------------------------------------- the model
def test_attention_processor_matches_diffusers_and_keeps_float64():
    from diffusers.models.attention_processor import StableAudioAttnProcessor2_0

    m = _model(torch.float32)
    b = _one_batch(_data(), dtype=torch.float32)
    ours = VLoss(3)(m, b, torch.Generator().manual_seed(0))
    m.dit.set_attn_processor(StableAudioAttnProcessor2_0())
    theirs = VLoss(3)(m, b, torch.Generator().manual_seed(0))
    assert torch.equal(ours, theirs)  # the same computation in float32, to the bit
    # float64: diffusers' processor rotates in float32, so its loss sits ~1e-8 off ours
    m64 = _model(torch.float64)
    b64 = _one_batch(_data())
    ours64 = VLoss(3)(m64, b64, torch.Generator().manual_seed(0))
    m64.dit.set_attn_processor(StableAudioAttnProcessor2_0())
    theirs64 = VLoss(3)(m64, b64, torch.Generator().manual_seed(0))
    assert float((ours64 - theirs64).detach().abs().max()) > 1e-12
    torch.testing.assert_close(ours64, theirs64, rtol=1e-5, atol=0)


def test_layer_groups_select_exactly_the_named_modules():
    m = _model()
    blocks = range(SIZES["num_layers"])
    attn = lambda i, a, ps: {f"dit.transformer_blocks.{i}.{a}.{p}.weight" for p in ps}  # noqa: E731
    qkvo = ("to_q", "to_k", "to_v", "to_out.0")
    want = {
        "self": set().union(*(attn(i, "attn1", qkvo) for i in blocks)),
        "cross": set().union(*(attn(i, "attn2", qkvo) for i in blocks)),
        "to_kv": set().union(*(attn(i, "attn2", ("to_k", "to_v")) for i in blocks)),
    }
    block_params = {n for n, _ in m.named_parameters() if n.startswith("dit.transformer_blocks.")}
    want["all"] = block_params
    assert set(LAYER_GROUPS) == set(want)
    for group, names in want.items():
        assert set(target_masks(m, group)) == names, group
    # "all" is the transformer blocks only: conditioning, time embedding and in/out projections stay
    assert not any(n.startswith("cond.") or "proj_in" in n for n in target_masks(m, "all"))
    assert any(".ff." in n for n in target_masks(m, "all")) and any("norm" in n for n in target_masks(m, "all"))


def test_v_objective_loss_by_hand():
    """The loss of VLoss from numpy, with the draws taken in the documented order (t, then ε)."""
    m = _model()
    data = _data()
    b = _one_batch(data)
    T = 4
    got = VLoss(T).draw_losses(m, b, torch.Generator().manual_seed(3)).detach().numpy()
    g = torch.Generator().manual_seed(3)
    n, C, Fr = data["x0"].shape
    t = torch.rand((n, T), generator=g, dtype=torch.float64).numpy()
    eps = torch.randn((n, T, C, Fr), generator=g, dtype=torch.float64).numpy()
    alpha, sigma = np.cos(np.pi * t / 2), np.sin(np.pi * t / 2)
    x0 = data["x0"][:, None]
    x_t = alpha[..., None, None] * x0 + sigma[..., None, None] * eps
    v = alpha[..., None, None] * eps - sigma[..., None, None] * x0
    want = np.zeros((n, T))
    want_all = np.zeros((n, T))
    with torch.no_grad():
        for i in range(n):
            for j in range(T):
                pred = m(
                    torch.as_tensor(x_t[i, j][None]),
                    torch.as_tensor(t[i, j : j + 1]),
                    b["text"][i : i + 1],
                    b["seconds_start"][i : i + 1],
                    b["seconds_total"][i : i + 1],
                    text_mask=b["text_mask"][i : i + 1],
                )[0].numpy()
                sq = (pred - v[i, j]) ** 2
                want[i, j] = sq[:, data["mask"][i]].mean()  # real frames only
                want_all[i, j] = sq.mean()  # every frame: padding counts
    np.testing.assert_allclose(got, want, rtol=1e-10)
    unmasked = VLoss(T).draw_losses(m, _one_batch(data, use_mask=False), torch.Generator().manual_seed(3))
    np.testing.assert_allclose(unmasked.detach().numpy(), want_all, rtol=1e-10)
    assert np.all(np.abs(want - want_all)[data["mask"].sum(1) < Fr] > 1e-6)  # the mask matters on padded items
    a, s = alpha_sigma(torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64))
    np.testing.assert_allclose(a.numpy(), [1.0, 0.0, math.sqrt(0.5)], atol=1e-15)
    np.testing.assert_allclose(s.numpy(), [0.0, 1.0, math.sqrt(0.5)], atol=1e-15)


def test_timestep_averaged_fisher_against_autograd_per_draw():
    """F = (1/N) Σ_i (1/T) Σ_t (∂L_t(z_i)/∂θ)²: autograd of each draw's loss, one at a time."""
    m = _model()
    data = _data(n=3)
    T, seed = 3, 5
    loss = VLoss(T)
    names = sorted(target_masks(m, "cross"))
    F = diagonal_fisher(m, latent_batches(data, ids=data["ids"], dtype=torch.float64), loss, names=names, seed=seed)
    params = dict(m.named_parameters())
    acc = {n: torch.zeros_like(params[n]) for n in names}
    mean_sq = {n: torch.zeros_like(params[n]) for n in names}
    for i in range(3):
        item = _one_batch(_item(data, i))
        g = example_generator(seed, str(data["ids"][i]))
        t, eps = loss.draws(item, g)
        per_draw = []
        for j in range(T):
            alpha, sigma = alpha_sigma(t[0, j])
            x0 = item["x0"][0]
            x_t, v = alpha * x0 + sigma * eps[0, j], alpha * eps[0, j] - sigma * x0
            pred = m(x_t[None], t[0, j : j + 1], item["text"], item["seconds_start"], item["seconds_total"])[0]
            lj = (((pred - v) ** 2)[:, item["mask"][0]]).mean()
            per_draw.append(torch.autograd.grad(lj, [params[n] for n in names]))
        for k, n in enumerate(names):
            gs = torch.stack([d[k] for d in per_draw])
            acc[n] += (gs**2).mean(0) / 3
            mean_sq[n] += gs.mean(0) ** 2 / 3
    for n in names:
        torch.testing.assert_close(F[n], acc[n], rtol=1e-9, atol=0)
    # the square of the draws' mean gradient is a different (smaller) quantity
    tot = sum(float(acc[n].sum()) for n in names)
    assert sum(float(mean_sq[n].sum()) for n in names) < 0.9 * tot


# --------------------------------------------------------------------------- unlearning on it
@pytest.fixture(scope="module")
def setting():
    m = _model()
    data = _data()
    loss = VLoss(2)
    F = diagonal_fisher(m, latent_batches(data, ids=data["ids"], use_mask=False, dtype=torch.float64), loss, seed=7)
    return m, data, loss, F


@pytest.mark.parametrize("mask", MASK_STRATEGIES)
def test_tau_is_exactly_zero_at_zero_step(setting, mask):
    m, data, loss, F = setting
    q = _item(data, 3)  # the most padded item
    tau = latent_scores(m, data, q, F, lr=0.0, mask=mask, loss_fn=loss, seed=7)
    assert tau.shape == (5,) and np.all(tau == 0.0)


def test_mask_strategies_as_the_paper_defines_them(setting):
    """M_U masks the query's padding in the unlearning step, M_L the training items' padding in the
    measured losses; none: neither, both: both, mixed: M_U only."""
    m, data, loss, F = setting
    q, seed, lr = _item(data, 3), 7, 1e-4
    group = "all"

    def theta(use_u):
        (qb,) = latent_batches(q, ids=q["ids"], use_mask=use_u, dtype=torch.float64)
        return unlearn(m, qb, loss, F, lr=lr, group=group, seed=seed)

    def losses(state, use_l):
        from aria.attribution.unlearning import example_losses, parameters

        with parameters(m, state):
            return example_losses(
                m, latent_batches(data, ids=data["ids"], use_mask=use_l, dtype=torch.float64), loss, seed=seed
            )

    own = {n: p.detach().clone() for n, p in m.named_parameters()}
    sides = {"none": (False, False), "both": (True, True), "mixed": (True, False)}
    for mask, (use_u, use_l) in sides.items():
        want = losses(theta(use_u), use_l) - losses(own, use_l)
        got = latent_scores(m, data, q, F, lr=lr, mask=mask, loss_fn=loss, group=group, seed=seed)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # the padded query's step differs with and without M_U, and an unpadded item's losses do not
    # depend on M_L (its mask is all True)
    du = sum(float((theta(True)[n] - theta(False)[n]).abs().sum()) for n in own)
    assert du > 0
    full = np.flatnonzero(data["mask"].all(1))
    a = latent_scores(m, data, q, F, lr=lr, mask="both", loss_fn=loss, seed=seed)
    b = latent_scores(m, data, q, F, lr=lr, mask="mixed", loss_fn=loss, seed=seed)
    np.testing.assert_array_equal(a[full], b[full])
    assert np.all(a[~data["mask"].all(1)] != b[~data["mask"].all(1)])


def test_first_order_identity_shrinks_tenfold_per_decade(setting):
    """τ(ẑ, z) = η g(z)ᵀ F⁻¹ g(ẑ) + O(η²): the relative error falls ~10x per decade of η (float64)."""
    m, data, loss, F = setting
    q, seed, group = _item(data, 3), 7, "all"
    masks = target_masks(m, group)
    names = list(masks)
    ref = sum(float(F[n].sum()) for n in names) / sum(F[n].numel() for n in names)
    Fe = {n: torch.clamp(F[n], min=1e-3 * ref) for n in names}
    params = dict(m.named_parameters())

    def grad(batch, key):
        lv = loss(m, batch, example_generator(seed, key))[0]
        return dict(zip(names, torch.autograd.grad(lv, [params[n] for n in names])))

    (qb,) = latent_batches(q, ids=q["ids"], use_mask=True, dtype=torch.float64)
    gq = grad(qb, "z3")
    pred = []
    for i, b in enumerate(latent_batches(data, ids=data["ids"], use_mask=False, batch_size=1, dtype=torch.float64)):
        gz = grad(b, f"z{i}")
        pred.append(sum(float((gz[n] * gq[n] / Fe[n]).sum()) for n in names))
    pred = np.asarray(pred)
    errs = []
    for eta in (1e-6, 1e-7, 1e-8, 1e-9):
        tau = latent_scores(m, data, q, F, lr=eta, mask="mixed", loss_fn=loss, group=group, seed=seed)
        errs.append(np.abs(tau / eta - pred).max() / np.abs(pred).max())
    errs = np.asarray(errs)
    ratios = errs[:-1] / errs[1:]
    assert np.all((ratios > 6) & (ratios < 16)), (errs, ratios)
    assert errs[-1] < 1e-3


def test_sampling_is_seeded_and_follows_the_model():
    m = _model()
    b = _one_batch(_data(n=2))
    x1 = sample(m, b, steps=4, generator=torch.Generator().manual_seed(2))
    x2 = sample(m, b, steps=4, generator=torch.Generator().manual_seed(2))
    x3 = sample(m, b, steps=4, generator=torch.Generator().manual_seed(3))
    assert x1.shape == (2, SIZES["latent_channels"], SIZES["max_frames"])
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    # one DDIM step from t = 1 lands on the model's x0 estimate: x0 = alpha x - sigma v at t = 1 is -v
    g = torch.Generator().manual_seed(2)
    noise = torch.randn((2, SIZES["latent_channels"], SIZES["max_frames"]), generator=g, dtype=torch.float64)
    with torch.no_grad():
        v = m(
            noise, torch.ones(2, dtype=torch.float64), b["text"], b["seconds_start"], b["seconds_total"], b["text_mask"]
        )
    torch.testing.assert_close(
        sample(m, b, steps=1, generator=torch.Generator().manual_seed(2)), -v, rtol=1e-12, atol=1e-12
    )


def test_round_off_of_tau_at_the_papers_step(setting):
    """At η = 1e-6 τ is a difference of losses ~1 that moves by ~1e-6: float32 keeps few of its digits,
    float64 all but ~1e-9 of them (the error measured against float64, scaled by u64/u32)."""
    from aria.evaluation.numerics import score_numerics

    m, data, loss, F = setting
    m32 = _model(torch.float32)
    m32.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    F32 = {n: f.float() for n, f in F.items()}
    taus = {"float64": [], "float32": []}
    for qi in (1, 3):
        q = _item(data, qi)
        taus["float64"].append(latent_scores(m, data, q, F, lr=1e-6, loss_fn=loss, seed=7))
        taus["float32"].append(latent_scores(m32, data, q, F32, lr=1e-6, loss_fn=loss, seed=7))
    checks = {k: np.stack(v, 1) for k, v in taus.items()}
    num = score_numerics(checks["float64"], checks, precision="float64")
    f32 = score_numerics(checks["float64"], checks, precision="float32")
    print("spread", num["spread"], "float32 error / spread", f32["ratio"], "float64 estimate / spread", num["ratio"])
    assert num["spread"] > 0 and num["ratio"] < 1e-6
    # float64's own round-off, seen directly: the first-order test above keeps shrinking tenfold per
    # decade down to η = 1e-9, so at 1e-6 round-off is below 1e-5 · 1e-3 of τ


def test_from_pretrained_reads_a_stable_audio_folder(tmp_path):
    """A pipeline-style folder (``transformer/`` and ``projection_model/``) loads offline into the same model."""
    from aria.models.diffusion import from_pretrained

    m = _model(torch.float32, seed=4)
    m.dit.save_pretrained(tmp_path / "transformer")
    m.cond.save_pretrained(tmp_path / "projection_model")
    got = from_pretrained(tmp_path / "transformer", text_dim=SIZES["text_dim"], max_seconds=SIZES["max_seconds"])
    assert got.config == m.config
    b = _one_batch(_data(), dtype=torch.float32)
    want = VLoss(2)(m, b, torch.Generator().manual_seed(0))
    torch.testing.assert_close(VLoss(2)(got.eval(), b, torch.Generator().manual_seed(0)), want, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from_pretrained(tmp_path / "nowhere")


def test_training_fits_and_is_seeded():
    from aria.models.diffusion import train_latent_dit

    data = _data(n=4)
    data = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in data.items()}
    sizes = dict(SIZES)
    a = train_latent_dit(data, sizes=sizes, steps=60, batch_size=4, lr=3e-3, n_timesteps=2, random_state=0)
    b = train_latent_dit(data, sizes=sizes, steps=60, batch_size=4, lr=3e-3, n_timesteps=2, random_state=0)
    c = train_latent_dit(data, sizes=sizes, steps=2, batch_size=4, lr=3e-3, n_timesteps=2, random_state=1)
    assert a["losses"] == b["losses"]
    assert all(torch.equal(p, q) for p, q in zip(a["model"].state_dict().values(), b["model"].state_dict().values()))
    assert c["losses"][:2] != a["losses"][:2]
    # the unmasked training loss of the data, same draws, before and after training
    (batch,) = latent_batches(data, ids=data["ids"], use_mask=False, batch_size=4)
    torch.manual_seed(0)
    untrained = LatentDiT(**sizes).eval()  # the trained model's initial weights (same seed)
    with torch.no_grad():
        before = float(VLoss(16)(untrained, batch, torch.Generator().manual_seed(9)).mean())
        after = float(VLoss(16)(a["model"], batch, torch.Generator().manual_seed(9)).mean())
    assert after < 0.9 * before, (before, after)  # measured 0.905 -> 0.731 (part of the loss is irreducible)


def test_the_diffusion_train_job_adopts_a_pretrained_pipeline_folder(tmp_path):
    """diffusion.model.pretrained: the job writes the user's transformer and projection model as the
    experiment's checkpoint instead of training, weight for weight."""
    import numpy as np

    from aria.io.checkpoints import load_model
    from aria.io.tables import write_npz
    from aria.workflow.jobs.diffusion import DiffusionTrainArgs, DiffusionTrainSettings, diffusion_train

    torch.manual_seed(3)
    src = LatentDiT(latent_channels=6, max_frames=5, num_layers=1, num_heads=2, head_dim=8, kv_heads=1,
                    text_dim=4, cond_dim=8, time_proj_dim=8)  # fmt: skip
    src.dit.save_pretrained(tmp_path / "pipe" / "transformer")
    src.cond.save_pretrained(tmp_path / "pipe" / "projection_model")
    n = 2
    write_npz(
        tmp_path / "train.npz",
        x0=np.zeros((n, 6, 5), np.float32),
        mask=np.ones((n, 5), bool),
        text=np.zeros((n, 3, 4), np.float32),
        text_mask=np.ones((n, 3), bool),
        seconds_start=np.zeros(n),
        seconds_total=np.ones(n),
        ids=np.array(["a", "b"]),
    )
    p = DiffusionTrainSettings(
        pretrained=str(tmp_path / "pipe" / "transformer"),
        sizes={"max_seconds": src.config["max_seconds"]},
        steps=1,
        batch_size=1,
        lr=1e-3,
        n_timesteps=1,
        seed=0,
    )
    a = DiffusionTrainArgs(params=p.to_dict(), out=str(tmp_path / "model.pt"), data=str(tmp_path / "train.npz"))
    diffusion_train(a, p)
    got, _ = load_model(tmp_path / "model.pt")
    want = src.state_dict()
    assert got.state_dict().keys() == want.keys()
    for k, v in got.state_dict().items():
        assert torch.equal(v, want[k]), k


def test_latent_self_influence_against_per_target_scores(setting):
    """Each target's R is its rank in τ computed here item by item (one forward pass per item, its own
    generator) with the target unlearned as a query, so the batched example losses are checked too;
    generations that overflow mark the point diverged instead of giving a Fréchet distance."""
    from aria.attribution.unlearning import example_generator, latent_self_influence, parameters, unlearn
    from aria.evaluation.selfinfluence import target_rank

    m, data, loss, F = setting
    E = np.random.default_rng(2).normal(size=(5, 3))
    step = dict(lr=1e-4, seed=7)
    rng = np.random.default_rng(3)

    def losses():
        with torch.no_grad():
            return np.array(
                [
                    float(loss(m, _one_batch(_item(data, i), use_mask=False), example_generator(7, f"z{i}"))[0])
                    for i in range(5)
                ]
            )

    doc = latent_self_influence(
        m, data, F, [1, 3], embeddings=E, loss_fn=loss, mask="mixed", top_k=2,
        generate=lambda model, gen: rng.normal(size=(4, 3)), **step,
    )  # fmt: skip
    before = losses()
    for j, t in enumerate([1, 3]):
        with parameters(m, unlearn(m, _one_batch(_item(data, t)), loss, F, **step)):
            tau = losses() - before
        assert doc["rank"][j] == target_rank(tau, t)
        np.testing.assert_allclose(doc["tau_target"][j], tau[t], rtol=1e-8, atol=1e-15)
    assert doc["diverged"] is False and np.isfinite(doc["frechet"])
    nan = latent_self_influence(
        m, data, F, [1], embeddings=E, loss_fn=loss, mask="mixed", top_k=2,
        generate=lambda model, gen: np.full((4, 3), np.nan), **step,
    )  # fmt: skip
    assert nan["diverged"] is True and nan["frechet"] is None


def test_generations_whose_audio_overflows_embed_as_nan():
    """The self-influence job's embedding of generations: each decoded up to its asked length and
    embedded; latents that are finite in float64 but whose audio overflows float32 (what the demo's
    lr 1e-5 x 4 steps produced) give NaN rows, which mark the grid point diverged."""
    from aria.audio.latents import FrameDCT
    from aria.workflow.jobs.diffusion import embed_generations

    class Stats:  # a stand-in encoder: the length and the mean of the audio it is given
        dim = 2

        def embed(self, y, sr):
            assert sr == 8000
            return np.array([len(y), float(np.mean(y))])

    codec = FrameDCT(frame=16, sr=8000)
    Z = np.random.default_rng(0).normal(size=(2, 16, 10))
    seconds = np.array([5 * 16 / 8000, 7.5 * 16 / 8000])  # 5 frames, and 7.5 rounded up to 8
    E = embed_generations(Z, seconds, codec=codec, encoder=Stats())
    for j, frames in enumerate((5, 8)):
        y = codec.decode(Z[j][:, :frames])
        np.testing.assert_allclose(E[j], [16 * frames, np.mean(y)])
    huge = Z * 1e40  # finite in float64, beyond float32's 3.4e38 once decoded
    assert np.isfinite(huge).all()
    assert np.isnan(embed_generations(huge, seconds, codec=codec, encoder=Stats())).all()
    Z[1, 0, 0] = np.nan
    assert np.isnan(embed_generations(Z, seconds, codec=codec, encoder=Stats())).all()
