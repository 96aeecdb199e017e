"""Data accounting: what survives each step, and whether the homogeneity pool can hold every K.

The checks here run as soon as the pool is known (right after the corpus or the segments,
before any training), so that a K larger than the pool stops a run in its first minutes
instead of failing in the null job later, and a query count too small for a verdict is
said up front.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pool_check"]


def pool_check(
    n_pool: int,
    n_queries: int,
    ks: Sequence[int],
    *,
    min_queries: int,
    pool: str,
    fix: str,
    add_queries: str = "add held-out items (split eval)",
) -> dict:
    """Compare every K with the pool and the query count with the verdict's minimum.

    Parameters
    ----------
    n_pool : int
        Items in the homogeneity pool after every filter (training segments or tracks).
    n_queries : int
        Queries that will be generated (held-out items that survived the filters).
    ks : sequence of int
        homogeneity.ks.
    min_queries : int, keyword-only
        analysis.verdict.min_queries: below it only a collapse beyond doubt gets a verdict.
    pool : str, keyword-only
        What the pool is, for the messages ("training tracks left after the corpus filters").
    fix : str, keyword-only
        What to change when a K does not fit, for the message.
    add_queries : str, keyword-only
        How to get more queries, for the message when fewer than 2 survive (the diagnostics
        compare queries with each other: ρ̄ and the spectrum need at least 2).

    Returns
    -------
    dict
        ``{"n_pool", "n_queries", "ks", "errors": [str], "warnings": [str]}``: errors stop the run.
    """
    errors, warnings = [], []
    too_big = sorted(int(k) for k in ks if int(k) > n_pool)
    if too_big:
        errors.append(f"K = {too_big} (homogeneity.ks) exceeds the {n_pool} {pool}; {fix}")
    elif max(ks) > n_pool // 2:
        warnings.append(
            f"K = {max(ks)} is more than half of the {n_pool} {pool}: random groups of that size overlap "
            "heavily and the null's spread shrinks, so z-scores at that K are hard to read"
        )
    if n_queries == 0:
        errors.append(
            f"no query survives: every held-out item was dropped (see the dropped-items table); {add_queries}"
        )
    elif n_queries == 1:
        errors.append(
            "only 1 query survives, but the diagnostics compare queries with each other (rho_bar needs at least "
            f"2; a full verdict, analysis.verdict.min_queries = {min_queries}); {add_queries}"
        )
    elif n_queries < min_queries:
        warnings.append(
            f"only {n_queries} queries (analysis.verdict.min_queries = {min_queries}): only a collapse "
            "beyond doubt gets a verdict, and Pos/Sig move in steps of "
            f"{100 / n_queries:.0f}%"
        )
    return {
        "n_pool": int(n_pool),
        "n_queries": int(n_queries),
        "ks": [int(k) for k in ks],
        "errors": errors,
        "warnings": warnings,
    }
