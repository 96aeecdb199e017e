"""Ground truth by counterfactual retraining: the linear datamodeling score (docs/spec.md §9).

Conventions, used throughout:

- ``masks`` is a bool array (M, N): row m is the random subset S_m of the N training
  segments a model was retrained on (a fraction ``alpha`` of them, drawn without
  replacement; subset m depends only on ``(random_state, m, N, alpha)``, so adding
  subsets never changes the existing ones).
- ``targets`` is a float array (M, Q): f_q(S_m) = -(loss of query q under the model
  retrained on S_m), dattri's convention. A training segment that helps a query lowers
  its loss and raises f_q. Averaged over R independent training runs when R > 1.
- Scores are (N, Q) with rows = training segments, columns = queries, higher = more
  positive influence (every method's convention, docs/spec.md §2). The datamodel prediction is
  g_q(S_m) = sum_{j in S_m} tau(q, z_j), i.e. ``G = masks @ S`` of shape (M, Q).
- LDS_q = Spearman correlation over m of (g_q, f_q); LDS = mean over queries. A
  query whose predictions or targets are constant over the subsets has no defined
  correlation; it is left out of the mean and counted in ``n_undefined``.

With this convention a method that ranks the truly helpful segments first has LDS > 0,
a random score matrix has LDS ~ 0, and a sign-flipped method has LDS < 0.

Seeds (issue 29, as dattri): run r of subset m trains with seed ``base + m * R + r``, where
``base = seeds.train + 1000`` (:func:`lds_base_seed`). Ensemble member m trains with
``seeds.train + m``, so no retraining shares a member's seed for ensembles of fewer than 1000
models, and every (subset, run) has its own seed: the targets average over seeds instead of
following one seed's trajectory. :func:`seed_noise_ceiling` measures how much of the targets'
variation over subsets is the subsets' effect rather than seed noise, and the highest LDS a
perfect predictor could reach with R runs.
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
    "LDS_SEED_OFFSET",
    "lds_base_seed",
    "retrain_seeds",
    "seed_noise_ceiling",
    "partial_lds_per_query",
    "lds_controls",
    "reference_matrices",
    "VERDICT_ORDINAL",
    "MEASURE_NAMES",
    "REFERENCE_NAMES",
    "testability",
]

#: the LDS retrainings' seeds start at seeds.train + LDS_SEED_OFFSET (see the module docstring)
LDS_SEED_OFFSET = 1000
#: the combined verdict as an ordinal for Kendall's tau (higher is better)
VERDICT_ORDINAL = {"query-dependent": 2, "offset-dominated": 1, "collapsed": 0, "noisy": 0, "constant": 0}


def lds_base_seed(train_seed: int) -> int:
    """First seed of the LDS retrainings, ``seeds.train + 1000``: above every ensemble member's
    seed ``seeds.train + m`` for m < 1000.
    """
    return int(train_seed) + LDS_SEED_OFFSET


def retrain_seeds(base_seed: int, subset: int, runs: int) -> list[int]:
    """Seeds of subset ``subset``'s ``runs`` trainings: ``base_seed + subset * runs + r`` (dattri's
    per-subset seeds; every (subset, run) gets its own, and they depend only on the config).
    """
    return [int(base_seed) + int(subset) * int(runs) + r for r in range(int(runs))]


def subset_mask(n_rows: int, subset: int, *, alpha: float, random_state: int) -> np.ndarray:
    """Subset ``subset`` of ``n_rows`` training segments, as a bool array (N,).

    Exactly ``round(alpha * n_rows)`` entries are True (at least 1, at most N - 1).

    Parameters
    ----------
    n_rows : int
        Number of training segments ``N`` (at least 2).
    subset : int
        Subset index ``m``.
    alpha : float, keyword-only
        Fraction of the segments kept, in (0, 1).
    random_state : int, keyword-only
        Seed; the subset is drawn from ``default_rng([random_state, subset])``, so subset
        ``m`` is the same whatever the number of subsets.

    Returns
    -------
    bool array, shape (N,)
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
    """The first ``n_subsets`` subsets, bool array (M, N); row m equals :func:`subset_mask` (m).

    ``random_state`` (int) is the seed passed to every :func:`subset_mask`.
    """
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
    total_steps: int | None = None,
    init_state: int | None = None,
    architecture: str = "aria",
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
        One training run per seed (R runs, averaged); weight init and data order
        (:func:`retrain_seeds`).
    total_steps : int, optional
        Optimizer steps of each run (recipe ``steps``: as many as member 0 took on all N
        segments); None: ``epochs`` passes over the subset (recipe ``epochs``).
    init_state : int, optional
        Seed of the initial weights of every run (``lds.init: shared``: member 0's seed, so that
        the runs differ only in their data and its order); None: each run's seed draws them.
    architecture : {"aria", "gpt2", "llama"}
        Member 0's architecture (:func:`aria.models.build.build_model`): the retrainings follow
        its recipe on the same kind of model.

    Runs train with the fused attention kernel (:func:`aria.models.training.train_model`'s
    ``fused``): the same model up to float32 round-off, about 2.8x faster on CPU.

    Returns
    -------
    dict with ``targets`` (Q,) mean over runs, ``target_runs`` (R, Q), and, per run,
    ``train_loss`` (mean loss on S_m), ``heldout_loss`` (mean loss on the segments left
    out of S_m: a retraining that failed shows as heldout_loss near the untrained ~log V),
    ``steps`` (optimizer steps taken) and ``seeds``.
    """
    from aria.models.build import build_model
    from aria.models.training import example_losses, train_model

    keep = np.asarray(keep, dtype=bool)
    lm = train.get("loss_mask")
    runs, tr_loss, ho_loss, steps = [], [], [], []
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
            total_steps=total_steps,
            init_state=init_state,
            fused=True,
            architecture=architecture,
        )
        steps.append(int(res["steps"]))
        model = build_model(model_cfg, architecture)
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
        "steps": np.asarray(steps, dtype=np.int64),
        "seeds": np.asarray(seeds, dtype=np.int64),
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

    Parameters
    ----------
    values : float array, shape (Q,)
        One value per query (e.g. the per-query LDS); non-finite entries are dropped.
    n_boot : int, keyword-only
        Bootstrap resamples.
    level : float, keyword-only
        Coverage of the interval (0.95: the 2.5 % and 97.5 % quantiles of the resampled means).
    random_state : int, keyword-only
        Seed of the resampling (``np.random.default_rng``).

    Returns
    -------
    (lo, hi) : tuple of float
        NaN, NaN when no value is finite.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(int(random_state))
    means = v[rng.integers(0, len(v), size=(int(n_boot), len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def lds_summary(
    pred: np.ndarray,
    targets: np.ndarray,
    *,
    n_boot: int = 1000,
    random_state: int = 0,
    covariates: np.ndarray | None = None,
) -> dict:
    """LDS of one method: mean, bootstrap 95% interval over queries, and the two halves.

    Parameters
    ----------
    pred, targets : float arrays (M, Q)
        Datamodel predictions (:func:`predicted_targets`) and retraining targets.
    n_boot : int, keyword-only
        Bootstrap resamples of the interval (:func:`bootstrap_interval`).
    random_state : int, keyword-only
        Seed of the bootstrap resampling.
    covariates : float array (M, k), optional
        Controls of the partial LDS (:func:`lds_controls`).

    Returns
    -------
    dict with ``lds`` (mean over defined queries), ``ci`` ([lo, hi]), ``per_query``
    (list, NaN as None), ``n_undefined``, ``n_subsets`` and ``halves``: the LDS computed
    from subsets ``[0, M/2)`` and ``[M/2, M)`` alone (the stability check). With
    ``covariates``, also ``partial_lds`` (mean over defined queries of
    :func:`partial_lds_per_query`, NaN when none is defined), ``partial_per_query`` and
    ``partial_n_undefined``.
    """
    per_q = lds_per_query(pred, targets)
    half = pred.shape[0] // 2
    halves = []
    for sl in (slice(0, half), slice(half, 2 * half)):
        h = lds_per_query(pred[sl], targets[sl]) if half >= 3 else np.full(pred.shape[1], np.nan)
        halves.append(float(np.nanmean(h)) if np.isfinite(h).any() else float("nan"))
    defined = np.isfinite(per_q)
    out = {
        "lds": float(per_q[defined].mean()) if defined.any() else float("nan"),
        "ci": list(bootstrap_interval(per_q, n_boot=n_boot, random_state=random_state)),
        "per_query": [float(x) if np.isfinite(x) else None for x in per_q],
        "n_undefined": int((~defined).sum()),
        "n_subsets": int(pred.shape[0]),
        "halves": halves,
    }
    if covariates is not None:
        part = partial_lds_per_query(pred, targets, covariates)
        ok = np.isfinite(part)
        out.update(
            partial_lds=float(part[ok].mean()) if ok.any() else float("nan"),
            partial_per_query=[float(x) if np.isfinite(x) else None for x in part],
            partial_n_undefined=int((~ok).sum()),
        )
    return out


def partial_lds_per_query(pred: np.ndarray, targets: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """Spearman partial correlation over subsets of (g_q, f_q) given the covariates, per query.

    Every variable is rank-transformed over the subsets (ties get their average rank), the
    covariates' ranks and an intercept are regressed out of the ranks of ``pred`` and of
    ``targets`` by least squares, and the residuals are correlated (Pearson): the partial
    Spearman correlation.

    Parameters
    ----------
    pred, targets : float arrays (M, Q)
    covariates : float array (M, k), the same for every query (k may be 0)

    Returns
    -------
    float64 array (Q,); NaN where a column is constant, where the covariates explain it
    entirely, or for every query when fewer than 3 residual degrees of freedom remain
    (M - k - 1 < 3).
    """
    pred, targets = np.asarray(pred, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    C = np.asarray(covariates, dtype=np.float64).reshape(len(pred), -1)
    if pred.shape != targets.shape:
        raise ValueError(f"predictions {pred.shape} and targets {targets.shape} differ in shape")
    M, Q = pred.shape
    X = np.column_stack([np.ones(M), rank_columns(C) if C.shape[1] else C])
    if M - np.linalg.matrix_rank(X) < 3:
        return np.full(Q, np.nan)
    a, b = rank_columns(pred), rank_columns(targets)

    def resid(Y):
        return Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0]

    ra, rb = resid(a), resid(b)
    na, nb = np.sqrt((ra * ra).sum(0)), np.sqrt((rb * rb).sum(0))
    # ranks have norm ~ M^1.5 about their mean; residuals below 1e-9 of that are round-off
    tol = 1e-9 * M**1.5
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ra * rb).sum(0) / (na * nb)
    r[(na <= tol) | (nb <= tol)] = np.nan
    return r


def lds_controls(masks: np.ndarray, targets: np.ndarray, segment_collection=None) -> dict:
    """The partial LDS's controls per subset: the targets' common component and the genre mix.

    Parameters
    ----------
    masks : bool array, shape (M, N)
        The M subsets (:func:`subset_masks`).
    targets : float array, shape (M, Q)
        Retraining targets of every subset and query.
    segment_collection : str array (N,), optional
        Collection (genre) of each training segment; None, or a single collection: no
        genre-mix control.

    Returns
    -------
    dict with ``covariates`` (M, k): column 0 the mean over queries of the targets of subset m
    (what every query shares, e.g. a subset that trains a better model), then the fraction of
    each collection in S_m but the first (alphabetically; the fractions sum to 1); ``names``
    (k,); ``note``: why there is no genre-mix control, or None.
    """
    masks = np.asarray(masks, dtype=bool)
    cols, names, note = [np.asarray(targets, dtype=np.float64).mean(1)], ["common component"], None
    if segment_collection is None:
        note = "no collection labels: the partial LDS controls for the common component only"
    else:
        g = np.asarray(segment_collection).astype(str)
        groups = sorted(set(g.tolist()))
        if len(groups) < 2:
            note = "one collection: the partial LDS controls for the common component only"
        size = masks.sum(1)
        for c in groups[1:]:
            cols.append((masks & (g == c)[None, :]).sum(1) / size)
            names.append(f"share of {c}")
    return {"covariates": np.column_stack(cols), "names": names, "note": note}


def _known(labels) -> np.ndarray:
    lab = np.asarray(labels).astype(str)
    return ~np.isin(np.char.lower(lab), ["", "unknown", "nan", "none"])


def reference_matrices(
    n_rows: int, n_queries: int, *, random_state: int, segment_collection=None, query_collection=None
) -> tuple[dict, dict]:
    """Reference score matrices (N, Q) for the validation table, and the ones skipped with why.

    - ``gaussian``: i.i.d. N(0, 1) scores, seeded by ``random_state`` (its own stream,
      independent of the subsets'): LDS ~ 0.
    - ``query_independent``: one N(0, 1) ranking of the segments, the same for every query (from
      the same stream): a collapsed matrix unrelated to the data. Its per-query LDS share one
      prediction, so their mean does not average out: its spread across seeds is the LDS a shared
      ranking gets by chance.
    - ``same_collection``: S[j, q] = 1 if segment j's collection is query q's, else 0.
    - ``collection_prior``: S[j, q] = the share of queries whose collection is segment j's,
      the same for every query: a data-only prior that ranks the collections.

    The last two need collection labels (``segment_collection`` (N,), ``query_collection``
    (Q,) str; "unknown" or empty = no label) with at least two collections among the
    segments and a query whose collection some segment has; otherwise they are skipped.

    Returns
    -------
    ``(matrices, skipped)``: name -> float64 array (N, Q), and name -> reason.
    """
    rng = np.random.default_rng([int(random_state), 0, 29])
    mats, skipped = {"gaussian": rng.standard_normal((int(n_rows), int(n_queries)))}, {}
    # one random ranking repeated for every query: r1 = 1 (collapsed), unrelated to the data;
    # its LDS shows what a shared ranking gets from the targets' common component alone
    mats["query_independent"] = np.repeat(rng.standard_normal((int(n_rows), 1)), int(n_queries), axis=1)
    reason = None
    if segment_collection is None or query_collection is None:
        reason = "no collection (genre) labels for the segments and queries"
    else:
        seg, qry = np.asarray(segment_collection).astype(str), np.asarray(query_collection).astype(str)
        if len(seg) != n_rows or len(qry) != n_queries:
            raise ValueError(f"{len(seg)} segment / {len(qry)} query labels for a {n_rows} x {n_queries} matrix")
        ks, kq = _known(seg), _known(qry)
        if len(set(seg[ks].tolist())) < 2:
            reason = "fewer than two known collections among the training segments"
        elif not np.isin(qry[kq], seg[ks]).any():
            reason = "no query's collection appears among the training segments"
    if reason:
        skipped = {"same_collection": reason, "collection_prior": reason}
        return mats, skipped
    same = (seg[:, None] == qry[None, :]) & ks[:, None] & kq[None, :]
    mats["same_collection"] = same.astype(np.float64)
    share = {c: float(np.mean(qry == c)) for c in set(seg[ks].tolist())}
    prior = np.array([share[c] if k else 0.0 for c, k in zip(seg, ks)])
    if len(set(prior[ks].tolist())) < 2:
        skipped["collection_prior"] = (
            "every collection of the segments holds the same share of the queries: the prior ranks no segment first"
        )
    else:
        mats["collection_prior"] = np.repeat(prior[:, None], int(n_queries), axis=1)
    return mats, skipped


def seed_noise_ceiling(target_runs: np.ndarray) -> dict:
    """How much of the targets' variation over subsets is the subsets' effect, not seed noise.

    With R >= 2 independent training runs per subset, each run's target is the subset's
    expected target plus seed noise, so the noise and the subset effect separate.

    Parameters
    ----------
    target_runs : float array (M, R, Q)
        f_q(S_m) of every run (ground-truth store ``target_runs``).

    Returns
    -------
    dict. With R < 2 (or M < 3): ``{"available": False, "reason", "runs", "n_subsets"}``.
    Otherwise ``available: True``, ``runs``, ``n_subsets`` and, averaged over queries:

    - ``seed_sd``: sd of a run's target about its subset's run mean, pooled within subsets
      (M (R - 1) degrees of freedom per query); averaged as a root mean square.
    - ``subset_sd``: sd over subsets of the expected target (the subset effect): the variance
      over m of the run mean minus ``seed_sd**2 / R``, clipped at 0; root mean square.
    - ``ratio``: ``subset_sd / seed_sd`` of the two averages (subset effect / one run's seed
      noise) and ``ratio_median`` over queries.
    - ``target_noise_sd``: ``seed_sd / sqrt(R)``, the seed noise left in the targets that LDS
      reads (the R-run means), and ``target_ratio``: ``subset_sd / target_noise_sd`` =
      ``ratio * sqrt(R)``. Below 2 the targets cannot separate methods (:func:`testability`);
      2 is a reliability of the R-run mean of 2² / (2² + 1) = 0.8.
    - ``run_agreement``: Spearman over subsets between run 0's and run 1's targets, mean over
      queries (test-retest of the targets).
    - ``between_run_r``: Pearson over subsets between two runs' targets, mean over the run pairs
      (one run's reliability); ``split_half``: the reliability of the R-run mean by
      Spearman-Brown, ``R rho / (1 + (R - 1) rho)`` (for R = 2 the split-half reliability).
    - ``lds_ceiling``: mean over queries of ``sqrt(max(reliability, 0))``: the correlation a
      perfect predictor of the expected targets can reach with the R-run mean (attenuation).
    - ``common_share``: variance over subsets of the run mean averaged over queries, divided
      by the mean over queries of each query's variance over subsets: the share common to all
      queries.

    and ``per_query`` with the lists ``seed_sd``, ``subset_sd``, ``ratio``, ``run_agreement``,
    ``between_run_r``, ``reliability`` and ``ceiling`` (NaN as None).
    """
    T = np.asarray(target_runs, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"target_runs must be (M, R, Q), got shape {T.shape}")
    M, R, Q = T.shape
    if R < 2 or M < 3:
        why = (
            f"{R} training run per subset, so seed noise cannot be told from the subset effect (set lds.runs >= 2)"
            if R < 2
            else f"{M} subsets: too few to estimate the subset effect"
        )
        return {"available": False, "reason": why, "runs": int(R), "n_subsets": int(M)}
    mean = T.mean(1)  # (M, Q)
    seed_var = ((T - mean[:, None, :]) ** 2).sum((0, 1)) / (M * (R - 1))
    subset_var = np.clip(mean.var(0, ddof=1) - seed_var / R, 0.0, None)
    seed_sd, subset_sd = np.sqrt(seed_var), np.sqrt(subset_var)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_q = np.where(seed_sd > 0, subset_sd / np.where(seed_sd > 0, seed_sd, 1.0), np.nan)
    run_agree = lds_per_query(T[:, 0], T[:, 1])
    Z = T - T.mean(0)
    ss = (Z * Z).sum(0)  # (R, Q)
    pairs = []
    for r in range(R):
        for t in range(r + 1, R):
            with np.errstate(invalid="ignore", divide="ignore"):
                pairs.append((Z[:, r] * Z[:, t]).sum(0) / np.sqrt(ss[r] * ss[t]))
    rho = np.mean(pairs, axis=0)
    rel = R * rho / (1 + (R - 1) * rho)
    ceil_q = np.sqrt(np.clip(rel, 0.0, None))
    centred = mean - mean.mean(0)
    total = (centred**2).sum() / Q
    common = float((centred.mean(1) ** 2).sum() / total) if total > 0 else float("nan")
    rms_seed, rms_subset = float(np.sqrt(seed_var.mean())), float(np.sqrt(subset_var.mean()))

    def _m(x):
        x = np.asarray(x, dtype=np.float64)
        return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")

    def _l(x):
        return [float(v) if np.isfinite(v) else None for v in np.asarray(x, dtype=np.float64)]

    return {
        "available": True,
        "runs": int(R),
        "n_subsets": int(M),
        "seed_sd": rms_seed,
        "subset_sd": rms_subset,
        "ratio": rms_subset / rms_seed if rms_seed > 0 else float("nan"),
        "ratio_median": float(np.nanmedian(ratio_q)) if np.isfinite(ratio_q).any() else float("nan"),
        "target_noise_sd": rms_seed / np.sqrt(R),
        "target_ratio": rms_subset / rms_seed * np.sqrt(R) if rms_seed > 0 else float("nan"),
        "run_agreement": _m(run_agree),
        "between_run_r": _m(rho),
        "split_half": _m(rel),
        "lds_ceiling": _m(ceil_q),
        "common_share": common,
        "per_query": {
            "seed_sd": _l(seed_sd),
            "subset_sd": _l(subset_sd),
            "ratio": _l(ratio_q),
            "run_agreement": _l(run_agree),
            "between_run_r": _l(rho),
            "reliability": _l(rel),
            "ceiling": _l(ceil_q),
        },
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
    """Kendall's tau-b over the names both have with finite values (NaN below 2 names)."""
    names = [n for n in a if n in b and np.isfinite(a[n]) and np.isfinite(b[n])]
    if len(names) < 2:
        return float("nan")
    from scipy import stats

    tau = stats.kendalltau([a[n] for n in names], [b[n] for n in names]).statistic
    return float(tau)


def order_agreement(
    diags: dict[str, dict],
    lds: dict[str, float],
    *,
    keys=("r1", "r2_5", "c_bar", "rho_bar"),
    higher_is_better=(),
    between=(),
) -> dict:
    """Does ordering methods by each measure give their order by LDS (descending)?

    Parameters
    ----------
    diags : method -> dict with the measures ``keys`` (a missing or NaN value leaves that
        method out of that measure's comparisons, e.g. a method without a replica)
    lds : method -> LDS
    higher_is_better : the keys whose best value is the highest (ordered descending, e.g.
        the replica agreement, the verdict's ordinal); the others are ordered ascending (the
        diagnostics: lower = more query-dependent)
    between : keys to compare with each other as well

    Returns
    -------
    dict with ``lds_order`` (best first) and, per measure in ``by_diagnostic``: ``kendall_tau``
    (tau-b, ties allowed) between the measure's order (best first) and the LDS order, over
    the methods that have both (1 = same order, -1 = reversed); ``order`` (by the measure,
    best first), ``identical`` (the same order as LDS over those methods),
    ``higher_is_better``, ``n`` (methods compared) and ``left_out`` (methods without the
    measure). With ``between``: ``between[a][b]``, Kendall's tau-b between the orders (best
    first) of measures a and b over the methods that have both.
    """
    hib = set(higher_is_better)
    lds = {m: float(v) for m, v in lds.items()}

    def _val(m, k):
        v = diags[m].get(k) if isinstance(diags[m], dict) else None
        return float("nan") if v is None else float(v)

    oriented = {}
    out = {"lds_order": _order(dict(lds), descending=True), "by_diagnostic": {}}
    for k in keys:
        d = {m: _val(m, k) for m in lds}
        have = [m for m in lds if np.isfinite(d[m])]
        oriented[k] = {m: (d[m] if k in hib else -d[m]) for m in have}
        order = _order({m: d[m] for m in have}, descending=k in hib)
        out["by_diagnostic"][k] = {
            "kendall_tau": _kendall(oriented[k], {m: lds[m] for m in have}),
            "order": order,
            "identical": order == [m for m in out["lds_order"] if m in set(have)],
            "higher_is_better": k in hib,
            "n": len(have),
            "left_out": [m for m in sorted(lds) if m not in set(have)],
        }
    if between:
        out["between"] = {
            a: {b: _kendall(*(dict(oriented[x]) for x in (a, b))) if a != b else 1.0 for b in between} for a in between
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


MEASURE_NAMES = {
    "r1": "r₁",
    "r2_5": "r₂:₅",
    "c_bar": "c̄",
    "rho_bar": "ρ̄",
    "agreement": "replica agreement",
    "verdict": "the verdict",
}
REFERENCE_NAMES = {
    "gaussian": "a Gaussian random matrix",
    "query_independent": "one random ranking for every query (query-independent)",
    "same_collection": "the same-collection indicator",
    "collection_prior": "the collection prior (query-independent)",
}


def _t(x, spec: str = "+.2f") -> str:
    """A correlation for a sentence: ``+0.12``, or "undefined" (NaN: e.g. a measure tied for every method)."""
    return "undefined" if x is None or not np.isfinite(x) else format(x, spec)


def runs_needed(ceiling: dict, target: float = 2.0) -> int | None:
    """The runs per subset R at which the R-run mean's seed noise falls to 1/``target`` of the
    subset effect, ``ceil((target / ratio)^2)`` (None when the ratio is 0 or undefined).
    """
    r = ceiling.get("ratio")
    if r is None or not np.isfinite(r) or r <= 0:
        return None
    return int(np.ceil((target / r) ** 2 - 1e-9))


def _target_ratio(ceiling: dict) -> float:
    """The subset effect over the seed noise of the R-run mean targets (``target_ratio``; derived
    as ``ratio * sqrt(runs)`` for documents written before it was stored).
    """
    return ceiling.get("target_ratio", ceiling["ratio"] * np.sqrt(ceiling["runs"]))


def testability(ceiling: dict | None) -> tuple[bool, str]:
    """Whether the LDS targets can test the claim: ``(testable, why)`` from
    :func:`seed_noise_ceiling`: R >= 2 and the subset effect at least 2 times the seed noise
    left in the targets (the R-run means: ``target_ratio``), i.e. the R-run mean's reliability
    at least 0.8. One run's ratio is quoted next to it; more runs per subset raise the targets'
    ratio by sqrt(R), and the message says how many would reach 2.
    """
    if not ceiling or not ceiling.get("available"):
        why = (ceiling or {}).get("reason") or "no seed-noise ceiling (one training run per subset)"
        return False, why
    tr = _target_ratio(ceiling)
    if not np.isfinite(tr) or tr < 2:
        need = runs_needed(ceiling)
        more = f"; about {need} runs per subset would reach 2" if need else ""
        return False, (
            f"the subset effect is only {tr:.2f} times the seed noise of the {ceiling['runs']}-run mean targets "
            f"(sd {ceiling['subset_sd']:.3g} against {ceiling['seed_sd']:.3g} per run, ratio {ceiling['ratio']:.2f} "
            f"for one run; at least 2 is needed{more})"
        )
    return True, ""


def validation_reading(
    agreement: dict,
    stability: dict,
    labels: dict[str, str] | None = None,
    *,
    ceiling: dict | None = None,
    references: dict | None = None,
) -> str:
    """One honest paragraph reading the validation table.

    ``ceiling``: :func:`seed_noise_ceiling` of the ground truth; when given and it says the
    targets cannot test the claim (R < 2, or subset effect / seed noise < 2, see
    :func:`testability`), the paragraph says "not testable on this setting" instead of whether
    the claim holds. ``references``: name -> LDS document of the reference matrices
    (:func:`reference_matrices`), quoted with their LDS.
    """
    labels = labels or {}
    lab = [labels.get(m, m) for m in agreement["lds_order"]]
    names = MEASURE_NAMES
    diag = {k: v for k, v in agreement["by_diagnostic"].items() if k in ("r1", "r2_5", "c_bar", "rho_bar")}
    same = [names[k] for k, v in diag.items() if v["identical"]]
    differ = {k: v for k, v in diag.items() if not v["identical"]}
    parts = [f"By LDS the methods rank {' > '.join(lab)}."]
    testable, why = (True, "") if ceiling is None else testability(ceiling)
    if not testable:
        taus = ", ".join(f"{names.get(k, k)} {_t(v['kendall_tau'])}" for k, v in agreement["by_diagnostic"].items())
        parts.append(
            f"Not testable on this setting: {why}. Neither agreement nor disagreement with the LDS order "
            f"says whether the claim of the paper holds (Kendall τ against LDS, for the record: {taus})."
        )
    elif not differ:
        parts.append("Every diagnostic orders them the same way: the paper's claim holds here.")
    else:
        if same:
            parts.append(f"{', '.join(same)} give the same order.")
        for k, v in differ.items():
            o = " > ".join(labels.get(m, m) for m in v["order"])
            parts.append(f"{names[k]} orders them {o} (Kendall τ = {_t(v['kendall_tau'])}).")
        parts.append("Where the orders disagree, the diagnostics alone would have picked a different method.")
    if testable:
        for k in ("agreement", "verdict"):
            v = agreement["by_diagnostic"].get(k)
            if v is not None:
                left = f"; left out: {', '.join(labels.get(m, m) for m in v['left_out'])}" if v["left_out"] else ""
                parts.append(f"Ordered by {names[k]}, Kendall τ against LDS is {_t(v['kendall_tau'])}{left}.")
    if ceiling and ceiling.get("available"):
        how = [f"recipe {ceiling['recipe']}"] if ceiling.get("recipe") else []
        if ceiling.get("init"):
            how.append(
                "every retraining starts from the initial weights of member 0, its seed drawing the data order"
                if ceiling["init"] == "shared"
                else "every retraining draws fresh initial weights"
            )
        protocol = f" ({'; '.join(how)})" if how else ""
        parts.append(
            f"Targets{protocol}: subset effect / seed noise of the {ceiling['runs']}-run mean = "
            f"{_target_ratio(ceiling):.2f} (one run: {ceiling['ratio']:.2f}; sd "
            f"{ceiling['subset_sd']:.3g} vs {ceiling['seed_sd']:.3g} per run); the targets of two runs agree at "
            f"Spearman "
            f"{_t(ceiling['run_agreement'])}; the {ceiling['runs']}-run mean has reliability "
            f"{ceiling['split_half']:.2f}, so no method can reach an LDS above about {ceiling['lds_ceiling']:.2f}; "
            f"{100 * ceiling['common_share']:.0f}% of the variance of the targets is common to all queries."
        )
    if references:
        refs = "; ".join(f"{REFERENCE_NAMES.get(n, n)} {_t(d.get('lds'), '+.3f')}" for n, d in references.items())
        parts.append(f"References (LDS): {refs}.")
    if stability["identical"]:
        parts.append("The LDS order is the same on both disjoint halves of the subsets.")
    else:
        parts.append(
            f"The LDS order is not stable: the two disjoint halves of the subsets order the methods "
            f"{' > '.join(labels.get(m, m) for m in stability['order_first_half'])} and "
            f"{' > '.join(labels.get(m, m) for m in stability['order_second_half'])} "
            f"(Kendall τ = {_t(stability['kendall_tau'])}); treat close LDS values as ties."
        )
    return " ".join(parts)
