"""Ground truth by counterfactual retraining: the linear datamodeling score (SPEC §9).

Conventions, used throughout:

- ``masks`` is a bool array (M, N): row m is the random subset S_m of the N training
  segments a model was retrained on (a fraction ``alpha`` of them, drawn without
  replacement; subset m depends only on ``(random_state, m, N, alpha)``, so adding
  subsets never changes the existing ones).
- ``targets`` is a float array (M, Q): f_q(S_m) = -(loss of query q under the model
  retrained on S_m), dattri's convention. A training segment that helps a query lowers
  its loss and raises f_q. Averaged over R independent training runs when R > 1.
- Scores are (N, Q) with rows = training segments, columns = queries, higher = more
  positive influence (every method's convention, SPEC §2). The datamodel prediction is
  g_q(S_m) = sum_{j in S_m} tau(q, z_j), i.e. ``G = masks @ S`` of shape (M, Q).
- LDS_q = Spearman correlation over m of (g_q, f_q); LDS = mean over queries. A
  query whose predictions or targets are constant over the subsets has no defined
  correlation; it is left out of the mean and counted in ``n_undefined``.

With this convention a method that ranks the truly helpful segments first has LDS > 0,
a random score matrix has LDS ~ 0, and a sign-flipped method has LDS < 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from aria.attribution.linalg import rank_columns

__all__ = [
    "subset_mask",
    "subset_masks",
    "predicted_targets",
    "lds_per_query",
    "bootstrap_interval",
    "lds_summary",
    "counterfactual_targets",
    "order_agreement",
    "halves_agreement",
    "validation_reading",
]


def subset_mask(n_rows: int, subset: int, *, alpha: float, random_state: int) -> np.ndarray:
    """Subset ``subset`` of ``n_rows`` training segments, as a bool array (N,).

    Exactly ``round(alpha * n_rows)`` entries are True (at least 1, at most N - 1).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_rows < 2:
        raise ValueError(f"need at least 2 training segments for subsets, got {n_rows}")
    size = min(max(int(round(alpha * n_rows)), 1), n_rows - 1)
    rng = np.random.default_rng([int(random_state), int(subset)])
    out = np.zeros(n_rows, dtype=bool)
    out[rng.choice(n_rows, size=size, replace=False)] = True
    return out


def subset_masks(n_rows: int, n_subsets: int, *, alpha: float, random_state: int) -> np.ndarray:
    """The first ``n_subsets`` subsets, bool array (M, N); row m equals :func:`subset_mask` (m)."""
    return np.stack([subset_mask(n_rows, m, alpha=alpha, random_state=random_state) for m in range(n_subsets)])


def counterfactual_targets(
    train: dict,
    queries: dict,
    keep: np.ndarray,
    *,
    model_cfg,
    epochs: int,
    lr: float,
    batch_size: int,
    seeds: list[int],
    progress: bool = False,
) -> dict:
    """Retrain on one subset and measure every query's target f_q = -loss.

    Parameters
    ----------
    train, queries : dict of arrays
        ``tokens`` (N, L) int, ``mask`` (N, L) bool and optional ``loss_mask`` (N, L) bool:
        a stage's training segments and its queries (the same per-example loss and query
        loss mask as the attribution gradients).
    keep : bool array (N,)
        The subset S_m (:func:`subset_mask`).
    model_cfg : :class:`aria.models.transformer.ModelConfig`
    epochs, lr, batch_size : the training recipe of ensemble member 0
    seeds : list of int
        One training run per seed (R runs, averaged); weight init and data order.

    Returns
    -------
    dict with ``targets`` (Q,) mean over runs, ``target_runs`` (R, Q), and, per run,
    ``train_loss`` (mean loss on S_m) and ``heldout_loss`` (mean loss on the segments left
    out of S_m): a retraining that failed shows as heldout_loss near the untrained ~log V.
    """
    from aria.models.training import example_losses, train_model
    from aria.models.transformer import MusicTransformer

    keep = np.asarray(keep, dtype=bool)
    lm = train.get("loss_mask")
    runs, tr_loss, ho_loss = [], [], []
    for seed in seeds:
        res = train_model(
            train["tokens"][keep],
            train["mask"][keep],
            loss_mask=None if lm is None else lm[keep],
            cfg=model_cfg,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            n_checkpoints=1,
            random_state=int(seed),
            progress=progress,
            desc=f"retrain seed {seed}",
        )
        model = MusicTransformer(model_cfg)
        model.load_state_dict(res["final"])
        runs.append(-example_losses(model, queries["tokens"], queries["mask"], queries.get("loss_mask")))
        seg = example_losses(model, train["tokens"], train["mask"], lm)
        tr_loss.append(float(seg[keep].mean()))
        ho_loss.append(float(seg[~keep].mean()))
    R = np.stack(runs)
    return {
        "targets": R.mean(0),
        "target_runs": R,
        "train_loss": np.asarray(tr_loss),
        "heldout_loss": np.asarray(ho_loss),
    }


def predicted_targets(chunks: Iterable[tuple[int, np.ndarray]], masks: np.ndarray) -> np.ndarray:
    """Datamodel predictions ``G = masks @ S`` from row chunks of the score matrix.

    Parameters
    ----------
    chunks : iterable of ``(start, block)``
        Row blocks of S (N, Q) in any order (e.g. :func:`aria.io.stores.iter_row_chunks`);
        one pass, so an N x Q matrix never has to be held in memory.
    masks : bool array (M, N)

    Returns
    -------
    float64 array (M, Q).
    """
    masks = np.asarray(masks, dtype=bool)
    G = None
    seen = 0
    for start, block in chunks:
        block = np.asarray(block, dtype=np.float64)
        if G is None:
            G = np.zeros((masks.shape[0], block.shape[1]), dtype=np.float64)
        G += masks[:, start : start + len(block)].astype(np.float64) @ block
        seen += len(block)
    if G is None:
        raise ValueError("empty score matrix")
    if seen != masks.shape[1]:
        raise ValueError(f"score matrix has {seen} rows but the subsets cover {masks.shape[1]} training segments")
    return G


def lds_per_query(pred: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Spearman correlation over subsets (rows) between ``pred`` and ``targets``, per column.

    Parameters
    ----------
    pred, targets : float arrays (M, Q)

    Returns
    -------
    float64 array (Q,); NaN where either column is constant.
    """
    pred, targets = np.asarray(pred, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if pred.shape != targets.shape:
        raise ValueError(f"predictions {pred.shape} and targets {targets.shape} differ in shape")
    if pred.shape[0] < 3:
        raise ValueError(f"LDS needs at least 3 subsets, got {pred.shape[0]}")
    a = rank_columns(pred)
    b = rank_columns(targets)
    a -= a.mean(0)
    b -= b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(0) / den
    r[den == 0] = np.nan
    return r


def bootstrap_interval(
    values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, random_state: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN entries dropped).

    Resamples the values (queries) with replacement ``n_boot`` times.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(int(random_state))
    means = v[rng.integers(0, len(v), size=(int(n_boot), len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def lds_summary(pred: np.ndarray, targets: np.ndarray, *, n_boot: int = 1000, random_state: int = 0) -> dict:
    """LDS of one method: mean, bootstrap 95% interval over queries, and the two halves.

    Parameters
    ----------
    pred, targets : float arrays (M, Q)
        Datamodel predictions (:func:`predicted_targets`) and retraining targets.

    Returns
    -------
    dict with ``lds`` (mean over defined queries), ``ci`` ([lo, hi]), ``per_query``
    (list, NaN as None), ``n_undefined``, ``n_subsets`` and ``halves``: the LDS computed
    from subsets ``[0, M/2)`` and ``[M/2, M)`` alone (the stability check).
    """
    per_q = lds_per_query(pred, targets)
    half = pred.shape[0] // 2
    halves = []
    for sl in (slice(0, half), slice(half, 2 * half)):
        h = lds_per_query(pred[sl], targets[sl]) if half >= 3 else np.full(pred.shape[1], np.nan)
        halves.append(float(np.nanmean(h)) if np.isfinite(h).any() else float("nan"))
    defined = np.isfinite(per_q)
    return {
        "lds": float(per_q[defined].mean()) if defined.any() else float("nan"),
        "ci": list(bootstrap_interval(per_q, n_boot=n_boot, random_state=random_state)),
        "per_query": [float(x) if np.isfinite(x) else None for x in per_q],
        "n_undefined": int((~defined).sum()),
        "n_subsets": int(pred.shape[0]),
        "halves": halves,
    }


def _order(values: dict[str, float], *, descending: bool) -> list[str]:
    """Names sorted by value (ties and NaN keep a stable, name-based order; NaN last)."""
    names = sorted(values)
    key = [
        (not np.isfinite(values[n]), (-values[n] if descending else values[n]) if np.isfinite(values[n]) else 0)
        for n in names
    ]
    return [n for _, n in sorted(zip(key, names), key=lambda t: t[0])]


def _kendall(a: dict[str, float], b: dict[str, float]) -> float:
    names = [n for n in a if np.isfinite(a[n]) and np.isfinite(b[n])]
    if len(names) < 2:
        return float("nan")
    from scipy import stats

    tau = stats.kendalltau([a[n] for n in names], [b[n] for n in names]).statistic
    return float(tau)


def order_agreement(diags: dict[str, dict], lds: dict[str, float], *, keys=("r1", "r2_5", "c_bar", "rho_bar")) -> dict:
    """Does ordering methods by each diagnostic (ascending) give their order by LDS (descending)?

    Parameters
    ----------
    diags : method -> dict with the diagnostics ``keys``
    lds : method -> LDS

    Returns
    -------
    dict with ``lds_order`` (best first) and, per diagnostic, ``kendall_tau`` between the
    diagnostic's ascending order and LDS's descending order (Kendall's tau of the
    diagnostic against -LDS; 1 = same order, -1 = reversed), ``order`` (by the
    diagnostic, best first) and ``identical``.
    """
    neg = {m: -float(v) for m, v in lds.items()}
    out = {"lds_order": _order(dict(lds), descending=True), "by_diagnostic": {}}
    for k in keys:
        d = {m: float(diags[m][k]) for m in lds}
        order = _order(d, descending=False)
        out["by_diagnostic"][k] = {
            "kendall_tau": _kendall(d, neg),
            "order": order,
            "identical": order == out["lds_order"],
        }
    return out


def halves_agreement(halves: dict[str, list[float]]) -> dict:
    """Stability of the LDS order: the orders from the two disjoint halves of the subsets.

    Parameters
    ----------
    halves : method -> [LDS on the first half, LDS on the second half]
    """
    a = {m: h[0] for m, h in halves.items()}
    b = {m: h[1] for m, h in halves.items()}
    oa, ob = _order(a, descending=True), _order(b, descending=True)
    return {"order_first_half": oa, "order_second_half": ob, "kendall_tau": _kendall(a, b), "identical": oa == ob}


def validation_reading(agreement: dict, stability: dict, labels: dict[str, str] | None = None) -> str:
    """One honest paragraph reading the validation table."""
    labels = labels or {}
    lab = [labels.get(m, m) for m in agreement["lds_order"]]
    names = {"r1": "r₁", "r2_5": "r₂:₅", "c_bar": "c̄", "rho_bar": "ρ̄"}
    same = [names[k] for k, v in agreement["by_diagnostic"].items() if v["identical"]]
    differ = {k: v for k, v in agreement["by_diagnostic"].items() if not v["identical"]}
    parts = [f"By LDS the methods rank {' > '.join(lab)}."]
    if not differ:
        parts.append("Every diagnostic orders them the same way: the paper's claim holds here.")
    else:
        if same:
            parts.append(f"{', '.join(same)} give the same order.")
        for k, v in differ.items():
            o = " > ".join(labels.get(m, m) for m in v["order"])
            parts.append(f"{names[k]} orders them {o} (Kendall τ = {v['kendall_tau']:+.2f}).")
        parts.append("Where the orders disagree, the diagnostics alone would have picked a different method.")
    if stability["identical"]:
        parts.append("The LDS order is the same on both disjoint halves of the subsets.")
    else:
        parts.append(
            f"The LDS order is not stable: the two disjoint halves of the subsets order the methods "
            f"{' > '.join(labels.get(m, m) for m in stability['order_first_half'])} and "
            f"{' > '.join(labels.get(m, m) for m in stability['order_second_half'])} "
            f"(Kendall τ = {stability['kendall_tau']:+.2f}); treat close LDS values as ties."
        )
    return " ".join(parts)
