"""Axis--channel alignment of a score matrix's leading axis (docs/spec.md §7, paper Eq. 8).

u_1 (T,) is the leading left singular vector at the homogeneity pool's unit: the
track level for audio (the mean of u_1 over a track's segments), the segment for
the symbolic pool. For a channel c with feature matrices X_g (T x d_g):

* ``A_max`` = max over its features g and dimensions d of |corr(u_1, X_g[:, d])|;
* ``A_R``   = max over its features of the multiple correlation R of an OLS fit of
  u_1 on X_g with an intercept (R = sqrt of the fit's R^2).

A high A_max says the axis that the method ranks every query by is one feature
dimension (e.g. loudness); A_R >> A_max says it is a combination.

Guard against fits with too many dimensions. An OLS fit on d_g >= T - 1 columns
interpolates u_1 (R = 1 whatever u_1 is), and R is inflated well before that
(E[R^2] = d/(T-1) for pure noise). So a feature is fit on at most
``m = max(1, floor(max_dims_fraction * (T - 1)))`` of its dimensions, chosen by
forward selection: it starts from the single best dimension (whose R is that
feature's |corr| maximum) and adds, at each step, the dimension that raises R^2
most. With d_g <= m all dimensions enter and R is the plain OLS R. R never
decreases along the path, so A_R >= A_max holds by construction, and how many
dimensions each feature used is reported. Constant columns carry no information
and are dropped (their correlation is defined as 0). Sequence features (compared
by LCS in homogeneity) have no vector form and are not used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from aria.evaluation.homogeneity import is_sequence_feature

__all__ = ["feature_alignment", "channel_alignment", "DEFAULT_MAX_DIMS_FRACTION"]

#: default share of (T - 1) that one OLS fit may use, see the module docstring
DEFAULT_MAX_DIMS_FRACTION = 0.1

_TOL = 1e-10


def _centred(u, X) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != u.shape[0]:
        raise ValueError(f"feature matrix of shape {X.shape} for an axis of {u.shape[0]} units")
    if not (np.isfinite(u).all() and np.isfinite(X).all()):
        raise ValueError("non-finite values in the axis or the features")
    return u - u.mean(), X - X.mean(axis=0)


def feature_alignment(u, X, *, max_dims: int | None = None) -> dict:
    """|corr| maximum and forward-selected multiple correlation of u on one feature.

    Parameters
    ----------
    u : array, shape (T,)
        The axis (any scale; only correlations are computed).
    X : array, shape (T, d) or (T,)
        One feature's matrix.
    max_dims : int, optional
        At most this many dimensions enter the OLS fit (default: all non-constant ones).

    Returns
    -------
    dict
        ``a_max`` (max_d |corr(u, X[:, d])|), ``argmax`` (that dimension), ``r``
        (multiple correlation of the fit, >= ``a_max``), ``dims`` (dimensions used,
        in the order they entered), ``n_dims`` (d), ``n_const`` (constant columns).
    """
    y, Xc = _centred(u, X)
    T, d = Xc.shape
    norms = np.linalg.norm(Xc, axis=0)
    live = np.flatnonzero(norms > _TOL * max(1.0, float(np.abs(X).max(initial=0.0))) * np.sqrt(T))
    out = {"a_max": 0.0, "argmax": None, "r": 0.0, "dims": [], "n_dims": int(d), "n_const": int(d - len(live))}
    ynorm = float(np.linalg.norm(y))
    if ynorm == 0.0 or len(live) == 0:
        return out
    y = y / ynorm
    Z = Xc[:, live] / norms[live]  # unit columns
    corr = Z.T @ y
    best = int(np.argmax(np.abs(corr)))
    out["a_max"] = float(min(1.0, abs(corr[best])))
    out["argmax"] = int(live[best])
    m = len(live) if max_dims is None else max(1, min(int(max_dims), len(live)))

    # forward selection by Gram-Schmidt: R^2 = |projection of y on span(chosen)|^2
    basis = np.zeros((T, 0))
    resid_Z = Z.copy()
    r2 = 0.0
    chosen: list[int] = []
    avail = np.ones(len(live), dtype=bool)
    for _ in range(m):
        nz = np.linalg.norm(resid_Z, axis=0)
        ok = avail & (nz > 1e-8)
        if not ok.any():
            break
        gain = np.zeros(len(live))
        gain[ok] = (resid_Z[:, ok].T @ y) ** 2 / nz[ok] ** 2
        j = int(np.argmax(np.where(ok, gain, -1.0))) if chosen else best
        if not ok[j]:
            break
        e = resid_Z[:, j] / nz[j]
        r2 += float(e @ y) ** 2
        basis = np.column_stack([basis, e])
        resid_Z -= np.outer(e, e @ resid_Z)
        avail[j] = False
        chosen.append(int(live[j]))
    out["r"] = float(np.sqrt(min(max(r2, out["a_max"] ** 2), 1.0)))
    out["dims"] = chosen
    return out


def channel_alignment(
    u,
    features: Mapping[str, np.ndarray],
    channels: Mapping[str, Sequence[str]],
    *,
    max_dims_fraction: float = DEFAULT_MAX_DIMS_FRACTION,
) -> dict:
    """A_max and A_R of the axis u for each channel (Eq. 8).

    Parameters
    ----------
    u : array, shape (T,)
        Leading left singular vector at the pool's unit.
    features : mapping name -> array (T, d_g)
        Feature matrices; non-numeric or ragged (sequence) features are skipped.
    channels : mapping channel -> feature names
    max_dims_fraction : float, keyword-only
        Share of (T - 1) one fit may use (module docstring).

    Returns
    -------
    dict
        ``{channel: {"a_max", "a_max_feature", "a_r", "a_r_feature", "features": {g: ...},
        "skipped": [...]}}`` plus ``"_fit": {"T", "max_dims"}``.
    """
    T = int(np.asarray(u).shape[0])
    if not 0 < max_dims_fraction <= 1:
        raise ValueError(f"max_dims_fraction must be in (0, 1], got {max_dims_fraction}")
    m = max(1, int(np.floor(max_dims_fraction * (T - 1))))
    out: dict = {"_fit": {"T": T, "max_dims": m, "max_dims_fraction": float(max_dims_fraction)}}
    for ch, names in channels.items():
        per, skipped = {}, []
        for g in names:
            X = features.get(g)
            if X is None or is_sequence_feature(X):
                skipped.append(g)
                continue
            Xa = np.asarray(X, dtype=np.float64)
            if Xa.ndim not in (1, 2) or Xa.shape[0] != T:
                raise ValueError(f"feature {g!r} has shape {Xa.shape}, the axis has {T} units")
            per[g] = feature_alignment(u, Xa, max_dims=m)
        row = {"a_max": None, "a_max_feature": None, "a_r": None, "a_r_feature": None, "features": per}
        if per:
            gmax = max(per, key=lambda g: per[g]["a_max"])
            gr = max(per, key=lambda g: per[g]["r"])
            row.update(a_max=per[gmax]["a_max"], a_max_feature=gmax, a_r=per[gr]["r"], a_r_feature=gr)
        row["skipped"] = skipped
        out[ch] = row
    return out
