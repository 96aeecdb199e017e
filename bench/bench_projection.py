"""Benchmark projected per-example gradients: aria vs dattri's TRAK feature step.

Builds the demo-sized :class:`~aria.models.transformer.MusicTransformer` (``ModelConfig()``
defaults: d_model 64, 2 layers, 4 heads, d_ff 256, max_len 256; ~167 k
parameters) with random weights and N random 256-token segments, then times in
one run and side by side:

* aria   - :func:`aria.attribution.projection.project_gradients` (``torch.func`` vmap/grad
           per-example gradients, seeded Gaussian projection generated in row
           blocks of ``--block-rows``);
* dattri - ``TRAKAttributor.cache(train_loader)`` of dattri: per-example
           gradients by ``vmap(grad(loss))`` over flattened parameters, scaled by
           1/sqrt(p), projected by its ``random_project`` (CPU: ``BasicProjector``,
           ``proj_type="normal"``, regenerated for every batch in column blocks of
           100), plus its per-model k x k solve. The loss is aria's per-example
           loss; the "Q" function is a zero by default (``--dattri-q zero``, so
           only gradients + projection are timed), ``exp-loss`` adds dattri's
           usual extra forward pass for 1 - p_correct.

Both use the same model, data, k, batch size, device and thread count. Each side
runs one warm-up batch first (vmap tracing, allocator), which is not timed.
Reported: wall seconds, segments/s, and the ratio aria/dattri of segments/s
(> 1: aria is faster).

Usage::

    python bench/bench_projection.py                        # N=256, k=512
    python bench/bench_projection.py --n 64 --k 256 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # dattri's progress bars, set before tqdm loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

from aria.attribution.projection import attributed_params, project_gradients  # noqa: E402
from aria.models.transformer import ModelConfig, MusicTransformer, per_example_loss  # noqa: E402
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


def time_aria(model, tokens, mask, *, k, seed, batch_size, device, block_rows) -> float:
    """Seconds of :func:`project_gradients` on all segments (after one warm-up batch)."""
    kw = dict(k=k, seed=seed, batch_size=batch_size, device=device, block_rows=block_rows)
    project_gradients(model, tokens[:batch_size], mask[:batch_size], **kw)
    _sync(device)
    t0 = time.perf_counter()
    out = project_gradients(model, tokens, mask, **kw)
    _sync(device)
    dt = time.perf_counter() - t0
    assert out.shape == (len(tokens), k) and np.isfinite(out).all()
    return dt


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=256, help="number of segments (default 256)")
    ap.add_argument("--k", type=int, default=512, help="projection dimension (default 512)")
    ap.add_argument("--batch-size", type=int, default=32, help="segments per batch (default 32)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--block-rows", type=int, default=16384, help="aria's rows of P per block")
    ap.add_argument(
        "--dattri-q",
        choices=("zero", "exp-loss"),
        default="zero",
        help="dattri's correct_probability_func (default zero: no extra forward)",
    )
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    if a.threads is not None:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cfg = ModelConfig()
    torch.manual_seed(a.seed)
    model = MusicTransformer(cfg).to(device).eval()
    p = sum(v.numel() for v in attributed_params(model).values())
    tokens, mask = make_data(a.n, cfg.max_len, a.seed)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"model: d_model={cfg.d_model} layers={cfg.n_layers} heads={cfg.n_heads} "
        f"d_ff={cfg.d_ff} max_len={cfg.max_len}  p={p:,} parameters"
    )
    print(f"data: N={a.n} segments x {cfg.max_len} tokens; k={a.k}; batch size {a.batch_size}; device {device}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs visible, load average {load[0]:.2f} (other processes may "
        f"compete for the cores); {platform.processor() or platform.machine()}"
    )

    t_aria = time_aria(
        model, tokens, mask, k=a.k, seed=a.seed, batch_size=a.batch_size, device=device, block_rows=a.block_rows
    )
    t_dattri = time_dattri(
        model, tokens, mask, k=a.k, seed=a.seed, batch_size=a.batch_size, device=device, q_mode=a.dattri_q
    )
    r_aria, r_dattri = a.n / t_aria, a.n / t_dattri
    print()
    print(f"{'':<36}{'seconds':>10}{'segments/s':>14}")
    print(f"{'aria project_gradients':<36}{t_aria:>10.2f}{r_aria:>14.1f}")
    print(f"{'dattri TRAKAttributor.cache':<36}{t_dattri:>10.2f}{r_dattri:>14.1f}")
    print(f"ratio aria/dattri (segments/s): {r_aria / r_dattri:.2f}")


if __name__ == "__main__":
    main()
