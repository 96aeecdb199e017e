"""Benchmark projected per-example gradients: the projection's cost over the gradients, and dattri.

For each model -- the demo-sized :class:`~aria.models.transformer.MusicTransformer`
(``ModelConfig()``: d_model 64, 2 layers, ~167 k parameters) and a ~3.4 M-parameter
one (d_model 256, 4 layers, 8 heads, d_ff 1024) -- with random weights and random
256-token segments, this times in one run and side by side (batch 32, same threads):

* grads          - :func:`aria.attribution.projection.per_example_grads` alone
                   (``torch.func`` vmap/grad): the reference, no projection;
* gaussian       - :func:`project_gradients` with ``projection="gaussian"`` and its
                   default 1 GiB block cache (P generated once per job where it fits);
* gaussian, no cache - the same P regenerated for every batch (Aria before issue 12);
* sjlt           - ``projection="sjlt"`` (s = 1, a seeded CountSketch);
* dattri         - ``TRAKAttributor.cache(train_loader)`` of dattri 0.3.0: per-example
                   gradients by ``vmap(grad(loss))``, projected by its
                   ``random_project`` (CPU: ``BasicProjector``, ``proj_type="normal"``,
                   regenerated for every batch in column blocks of 100), plus its
                   per-model k x k solve. The loss is aria's per-example loss; its "Q"
                   function is a zero, so only gradients + projection are timed.

Each variant runs one untimed warm-up batch first (vmap tracing, allocator, the
Gaussian cache), then the best of 3 passes over the data (dattri: one pass).
Reported: seconds per batch, and ratios against the gradients alone and against
dattri. A final block checks fidelity: on the trained demo model (when
``make demo`` has run), the correlation of projected GradDot scores with the
exact ones, per projection type.

Usage::

    python bench/bench_projection.py            # demo model at k = 4096 and 512, the 3.4 M one at 4096
    python bench/bench_projection.py --models demo --k 512 --n 64
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # dattri's progress bars, set before tqdm loads

if __name__ == "__main__":  # time under the malloc settings every aria job runs with (aria/runtime.py)
    from aria.runtime import MALLOC_DEFAULTS

    if any(k not in os.environ for k in MALLOC_DEFAULTS):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC_DEFAULTS, **os.environ})

import numpy as np  # noqa: E402
import torch  # noqa: E402

from aria.attribution.projection import (  # noqa: E402
    DEFAULT_CACHE_BYTES,
    attributed_params,
    make_projector,
    per_example_grads,
    project_gradients,
)
from aria.models.transformer import ModelConfig, MusicTransformer, batch_loss, per_example_loss  # noqa: E402
from aria.symbolic.tokenize import PAD  # noqa: E402


def make_data(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random non-PAD token segments, every 8th one with a masked PAD tail."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, PAD, size=(n, length)).astype(np.int64)
    mask = np.ones((n, length), dtype=bool)
    for i in range(0, n, 8):
        keep = int(rng.integers(length // 4, length))
        tokens[i, keep:] = PAD
        mask[i, keep:] = False
    return tokens, mask


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Aria's variants are timed in this many rounds, round-robin (each round times every
#: variant once), and each keeps its best: the machine's drift over minutes is larger
#: than some of the differences. dattri, far slower, is timed once.
REPEAT = 3
#: Where everything runs (``--device``).
DEVICE = torch.device("cpu")


class NoProjection:
    """The reference "projector": the first k gradient coordinates, a copy and nothing else,
    so the reference runs exactly :func:`project_gradients`'s path minus the projection."""

    kind = "none"

    def __init__(self, p: int, k: int):
        self.p, self.k = p, k

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        return G[:, : self.k].clone()


def aria_pass(model, tokens, mask, *, k, seed, batch_size, projector, device=DEVICE) -> float:
    """Seconds of one :func:`project_gradients` pass over all segments."""
    _sync(device)
    t0 = time.perf_counter()
    out = project_gradients(
        model, tokens, mask, k=k, seed=seed, batch_size=batch_size, projector=projector, device=device
    )
    _sync(device)
    dt = time.perf_counter() - t0
    assert out.shape == (len(tokens), k) and np.isfinite(out).all()
    return dt


def time_variants(model, tokens, mask, *, k, seed, batch_size, variants) -> dict[str, float]:
    """Best seconds per variant over :data:`REPEAT` round-robin rounds, after a warm-up batch
    each (vmap tracing, the Gaussian cache: what a job's first batch does). A variant whose
    pass takes over 20 s is timed once."""
    p = sum(v.numel() for v in attributed_params(model).values())
    kw = dict(k=k, seed=seed, batch_size=batch_size)
    projs = {}
    for label, kind, cache in variants:
        projs[label] = (
            NoProjection(p, k) if kind == "none" else make_projector(p, k, kind=kind, seed=seed, cache_bytes=cache)
        )
        aria_pass(model, tokens[:batch_size], mask[:batch_size], projector=projs[label], **kw)
    best = dict.fromkeys(projs, float("inf"))
    for _ in range(REPEAT):
        for label, proj in projs.items():
            if best[label] > 20 and best[label] != float("inf"):
                continue
            best[label] = min(best[label], aria_pass(model, tokens, mask, projector=proj, **kw))
    return best


def time_forward_backward(model, tokens, mask, *, batch_size) -> float:
    """Best seconds over :data:`REPEAT` passes of one forward and backward of the batch-mean
    loss per batch (training's cost; per-example gradients cannot be cheaper)."""
    batches = [
        (
            torch.as_tensor(tokens[s : s + batch_size], device=DEVICE),
            torch.as_tensor(mask[s : s + batch_size], device=DEVICE),
        )
        for s in range(0, len(tokens), batch_size)
    ]
    best = float("inf")
    for r in range(REPEAT + 1):  # round 0 is a warm-up
        model.zero_grad(set_to_none=True)
        _sync(DEVICE)
        t0 = time.perf_counter()
        for t, m in batches:
            batch_loss(model, t, m).backward()
        _sync(DEVICE)
        if r:
            best = min(best, time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return best


def time_dattri(model, tokens, mask, *, k, seed, batch_size, device, q_mode) -> float:
    """Seconds of dattri ``TRAKAttributor.cache`` on all segments (after a warm-up)."""
    from dattri.algorithm.trak import TRAKAttributor
    from dattri.task import AttributionTask
    from torch.utils.data import DataLoader, TensorDataset

    fc = torch.func.functional_call

    def loss(params, batch):
        t, m = batch
        return per_example_loss(fc(model, params, (t[None],)), t[None], m[None])[0]

    def prob(params, batch):
        return torch.exp(-loss(params, batch)) if q_mode == "exp-loss" else 0.0 * loss(params, batch)

    state = {n: v.detach().clone() for n, v in model.state_dict().items()}
    task = AttributionTask(loss_func=loss, model=model, checkpoints=[state])
    proj = {"proj_type": "normal", "proj_dim": k, "proj_max_batch_size": 32, "proj_seed": seed, "device": str(device)}
    # regularization > 0: with N < k the k x k kernel is singular
    att = TRAKAttributor(
        task=task, correct_probability_func=prob, projector_kwargs=proj, device=str(device), regularization=1e-3
    )

    def loader(n):
        ds = TensorDataset(torch.as_tensor(tokens[:n]), torch.as_tensor(mask[:n]))
        return DataLoader(ds, batch_size=batch_size, shuffle=False)

    att.cache(loader(batch_size))
    _sync(device)
    t0 = time.perf_counter()
    att.cache(loader(len(tokens)))
    _sync(device)
    dt = time.perf_counter() - t0
    assert att.inv_XTX_XT_list[0].shape == (k, len(tokens))
    return dt


def _dattri_child(cfg, state, tokens, mask, threads, kw) -> float:
    torch.set_num_threads(threads)
    model = MusicTransformer(cfg).eval()
    model.load_state_dict(state)
    return time_dattri(model, tokens, mask, **kw)


def time_dattri_isolated(model, cfg, tokens, mask, **kw) -> float | None:
    """:func:`time_dattri` in a child process, so that running out of memory (dattri on the
    3.4 M model at k = 4096 is killed at 24 GiB) costs only that row; None if it died."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    state = {n: v.detach().cpu() for n, v in model.state_dict().items()}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_dattri_child, cfg, state, tokens, mask, torch.get_num_threads(), kw).result()
        except BrokenProcessPool:
            return None


def fidelity(checkpoint, segments, queries, *, k, n_train=320, seeds=(0, 1, 2)) -> dict[str, float]:
    """Mean over queries and seeds of the Pearson correlation between projected and exact
    GradDot scores of ``n_train`` training segments, per projection type (a trained model:
    with random weights the exact inner products are all near 0 and any projection is noise)."""
    from aria.io.checkpoints import load_model
    from aria.io.tables import read_npz

    model, _ = load_model(checkpoint)
    model.eval()
    params = attributed_params(model)
    tr, qu = read_npz(segments), read_npz(queries)
    rows = np.random.default_rng(0).choice(len(tr["tokens"]), min(n_train, len(tr["tokens"])), replace=False)

    def grads(tok, msk, lm=None):
        parts = []
        for s in range(0, len(tok), 32):
            sl = slice(s, s + 32)
            lm_b = None if lm is None else torch.as_tensor(lm[sl])
            parts.append(per_example_grads(model, params, torch.as_tensor(tok[sl]), torch.as_tensor(msk[sl]), lm_b))
        return torch.cat(parts).double()

    Gt = grads(tr["tokens"][rows], tr["mask"][rows])
    Gq = grads(qu["tokens"], qu["mask"], qu.get("loss_mask"))
    exact = (Gt @ Gq.T).numpy()
    out = {}
    for kind in ("gaussian", "sjlt"):
        rs = []
        for sd in seeds:
            proj = make_projector(Gt.shape[1], k, kind=kind, seed=sd)
            S = (proj(Gt.float()).double() @ proj(Gq.float()).double().T).numpy()
            rs += [np.corrcoef(exact[:, j], S[:, j])[0, 1] for j in range(S.shape[1]) if exact[:, j].std() > 0]
        out[kind] = float(np.mean(rs))
    return out


MODELS = {
    "demo": ModelConfig(),
    "3m": ModelConfig(d_model=256, n_layers=4, n_heads=8, d_ff=1024),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="demo,3m", help="comma-separated of: demo, 3m (default both)")
    ap.add_argument("--k", default="4096,512", help="comma-separated projection dimensions (default 4096,512)")
    ap.add_argument("--k-large", default="4096", help="projection dimensions for the 3m model (default 4096)")
    ap.add_argument("--n", type=int, default=128, help="segments per timing, demo model (default 128)")
    ap.add_argument("--n-large", type=int, default=32, help="segments per timing, 3m model (default 32)")
    ap.add_argument("--n-dattri-large", type=int, default=32, help="segments for dattri on the 3m model (default 32)")
    ap.add_argument("--batch-size", type=int, default=32, help="segments per batch (default 32)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--no-dattri", action="store_true", help="skip dattri")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--demo-results", default="results", help="where make demo wrote (default results)")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    global DEVICE
    DEVICE = device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs visible, "
        f"load average {load[0]:.2f}; {platform.processor() or platform.machine()}; batch {a.batch_size}"
    )
    for name in a.models.split(","):
        cfg = MODELS[name]
        torch.manual_seed(a.seed)
        model = MusicTransformer(cfg).to(device).eval()
        p = sum(v.numel() for v in attributed_params(model).values())
        n = a.n if name == "demo" else a.n_large
        tokens, mask = make_data(n, cfg.max_len, a.seed)
        nb = -(-n // a.batch_size)
        print(f"\nmodel {name}: d_model={cfg.d_model} layers={cfg.n_layers} d_ff={cfg.d_ff}, p={p:,}; N={n}")
        for k in (int(x) for x in (a.k if name == "demo" else a.k_large).split(",")):
            fits = min(p * k * 4, DEFAULT_CACHE_BYTES) / (p * k * 4)
            variants = [("grads, no projection", "none", 0), ("gaussian", "gaussian", DEFAULT_CACHE_BYTES)]
            if fits < 0.05:  # the cache holds almost nothing: cached and uncached are the same computation
                variants[1] = ("gaussian (cache holds little)", "gaussian", DEFAULT_CACHE_BYTES)
            else:
                variants.append(("gaussian, no cache", "gaussian", 0))
            variants.append(("sjlt", "sjlt", 0))
            fb = time_forward_backward(model, tokens, mask, batch_size=a.batch_size)
            times = time_variants(model, tokens, mask, k=k, seed=a.seed, batch_size=a.batch_size, variants=variants)
            res = {label: t / nb for label, t in times.items()}
            t_g = res["grads, no projection"]
            res = {"forward+backward, batch loss": fb / nb, **res}
            print(f"k={k}  (Gaussian P {p * k * 4 / 2**30:.2f} GiB, {fits:.0%} of it fits the 1 GiB cache)")
            print(f"  {'':<30}{'s / batch':>11}{'x grads':>10}{'dattri / this':>15}")
            t_d = float("nan")
            if not a.no_dattri:
                nd = n if name == "demo" else min(n, a.n_dattri_large)
                td = time_dattri_isolated(
                    model,
                    cfg,
                    tokens[:nd],
                    mask[:nd],
                    k=k,
                    seed=a.seed,
                    batch_size=a.batch_size,
                    device=device,
                    q_mode="zero",
                )
                t_d = float("nan") if td is None else td / -(-nd // a.batch_size)
            for label, t in res.items():
                print(f"  {label:<30}{t:>11.3f}{t / t_g:>10.2f}{t_d / t:>15.1f}")
            if not a.no_dattri:
                note = "" if t_d == t_d else "  the process died (out of memory, or killed)"
                print(f"  {'dattri TRAK featurization':<30}{t_d:>11.3f}{t_d / t_g:>10.2f}{1.0:>15.1f}{note}")

    run = Path(a.demo_results) / "demo_symbolic"
    ckpt = run / "models/symbolic/m0.pt"
    if not ckpt.exists():
        print(f"\nfidelity: skipped, no trained demo model at {ckpt} (run make demo first)")
        return
    for k in (int(x) for x in a.k.split(",")):
        fid = fidelity(ckpt, run / "segments/symbolic/train.npz", run / "queries/symbolic/queries.npz", k=k)
        print(
            f"\nfidelity, trained demo model {ckpt}, k={k}: corr(projected, exact GradDot), mean over "
            "40 queries and 3 seeds: " + ", ".join(f"{kind} {r:.4f}" for kind, r in fid.items())
        )


if __name__ == "__main__":
    main()
