"""Round-off of scores that are differences of nearly equal quantities (unlearning's τ).

τ(ẑ, z) = L(z; θ′) − L(z; θ₀) cancels all but a few digits of two losses, so its round-off is
measured, not assumed: a sample of queries is scored in both formats, and the difference is set
against τ's spread over training items. Numpy only (the report imports it).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PRECISIONS", "UNIT_ROUNDOFF", "ERROR_LIMIT", "score_numerics"]

#: Formats of the unlearning passes (``methods.unlearning.precision``): float64 throughout, ``mixed``
#: (float32 hidden states, float64 output layer, softmax and averages), float32 throughout.
PRECISIONS = ("float64", "mixed", "float32")
#: Unit round-off u of the two IEEE formats.
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}
#: The largest estimated round-off of τ, as a share of τ's spread, that Aria accepts without a warning.
ERROR_LIMIT = 0.01


def score_numerics(scores, checks, *, precision: str) -> dict:
    """Round-off of unlearning scores against their spread, from a sample of queries scored in
    several formats.

    Parameters
    ----------
    scores : (N, Q) array
        τ as stored, computed in ``precision``.
    checks : dict
        ``{format: (N, C)}``: C of the queries scored, each from θ₀ on, in ``float64``, in
        ``float32`` and in ``precision`` (unrounded), all with the same C queries (``C`` may be 0).
    precision : str, keyword-only
        The format of ``scores``: ``float64``, ``mixed`` or ``float32``.

    Returns
    -------
    dict
        ``spread``: root mean square over queries of τ's standard deviation over training items;
        ``float32_error``: the measured root-mean-square difference between float32 and float64 τ
        on the sampled queries (float64 taken as exact: its error is 2⁻²⁹ times smaller);
        ``error``: the root-mean-square round-off of ``scores``: measured against float64 the same way,
        or, when ``precision`` is float64, estimated as ``float32_error · u64/u32`` (first-order
        round-off analysis: the same computation's error scales with the unit round-off u);
        ``ratio`` = error / spread, ``float32_ratio`` = float32_error / spread, ``ok`` = ratio ≤
        :data:`ERROR_LIMIT`, ``n_checked`` = C, ``precision``. With C = 0 the errors are None;
        with a zero spread the ratios are None.
    """
    S = np.asarray(scores, dtype=np.float64)
    ref = np.asarray(checks["float64"], dtype=np.float64)
    low = np.asarray(checks["float32"], dtype=np.float64)
    own = np.asarray(checks[precision], dtype=np.float64)
    if not ref.shape == low.shape == own.shape:
        raise ValueError(f"score_numerics: checks of shapes {ref.shape}, {low.shape} and {own.shape}")
    spread = float(np.sqrt(np.mean(S.var(axis=0)))) if S.size else 0.0
    out = {"precision": precision, "spread": spread, "n_checked": int(ref.shape[1]) if ref.ndim == 2 else 0}
    if not ref.size:
        return out | {"float32_error": None, "error": None, "ratio": None, "float32_ratio": None, "ok": None}

    def rms(x):
        return float(np.sqrt(np.mean(x**2)))

    err32 = rms(low - ref)
    error = err32 * UNIT_ROUNDOFF["float64"] / UNIT_ROUNDOFF["float32"] if precision == "float64" else rms(own - ref)
    if spread == 0:  # τ constant over the training items: no ranking to protect, no ratio
        return out | {"float32_error": err32, "error": error, "ratio": None, "float32_ratio": None, "ok": error == 0}
    ratio = error / spread
    return out | {
        "float32_error": err32,
        "error": error,
        "ratio": ratio,
        "float32_ratio": err32 / spread,
        "ok": bool(ratio <= ERROR_LIMIT),
    }
