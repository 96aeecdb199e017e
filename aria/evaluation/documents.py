"""The JSON documents of the homogeneity job: z-scores per K, the confound checks, empty features.

:func:`homogeneity_doc` is what ``homogeneity/<stage>/<method>.json`` holds (docs/spec.md §6), with
:func:`confounds_doc` (genre breakdown, genre-stratified null, same-piece share; docs/spec.md §7) and
:func:`empty_doc` (items with empty features in the top-K groups; docs/spec.md §5) at the main K.
Arrays in, plain JSON-ready dicts out; the job (:mod:`aria.workflow.jobs.evaluation`) reads and writes.
"""

from __future__ import annotations

import logging

import numpy as np

from aria.messages import some

__all__ = ["homogeneity_doc", "confounds_doc", "empty_doc", "EMPTY_DOMINATES"]

log = logging.getLogger("aria")


def confounds_doc(tab, K, col_ids, feats, channels, null, labels, p) -> dict:
    """Genre breakdown, genre-stratified null and same-piece share at K (docs/spec.md §7).

    Parameters
    ----------
    tab : dict
        :func:`aria.evaluation.homogeneity.homogeneity_table` of the matrix; ``tab["by_k"][K]``
        has the top-K ``groups`` (n_queries, K) and the per-channel ``H_c`` and ``z_c`` (n_queries,).
    K : int
        The group size checked (``homogeneity.main_k``).
    col_ids : array-like of str, shape (n_queries,)
        Query ids, in the matrix's column order.
    feats : dict of str to ndarray
        Pool features, each (n_pool, d_f), rows in pool order.
    channels : dict of str to list of str
        Features of each channel.
    null : dict
        The null distribution (:func:`aria.io.layouts.read_null`), with the feature ``scales``.
    labels : dict
        ``pool_genres`` (n_pool,), ``pieces`` (n_pool,) or None, ``query_genre`` {query id: genre}.
    p : dict
        ``n_groups`` and ``seed`` of the stratified null.

    Returns
    -------
    dict
        ``k``, ``query_genres``, ``pool_genres`` (counts), ``genre`` (per channel), ``stratified``
        and, for a segment pool, ``same_piece`` (share per query, its mean and the null share).
    """
    from aria.evaluation.confounds import (
        genre_breakdown,
        null_same_piece_share,
        same_piece_share,
        stratified_zscores,
    )

    t = tab["by_k"][K]
    q_genres = [labels["query_genre"].get(str(q), "unknown") for q in col_ids]
    pool_counts = dict(zip(*np.unique(labels["pool_genres"], return_counts=True)))
    strat = stratified_zscores(
        feats,
        channels,
        null["scales"],
        t["groups"],
        labels["pool_genres"],
        t["H_c"],
        n_groups=p["n_groups"],
        random_state=p["seed"],
    )
    doc = {
        "k": int(K),
        "query_genres": q_genres,
        "pool_genres": {str(g): int(n) for g, n in pool_counts.items()},
        "genre": {c: genre_breakdown(t["z_c"][c], q_genres) for c in channels},
        "stratified": {
            "z_c": {c: np.asarray(z).tolist() for c, z in strat["z_c"].items()},
            "summary": strat["summary"],
            "n_mixes": strat["n_mixes"],
            "n_groups": strat["n_groups"],
        },
    }
    if labels["pieces"] is not None:
        share = same_piece_share(t["groups"], labels["pieces"])
        doc["same_piece"] = {
            "share": share.tolist(),
            "mean_share": float(share.mean()),
            "null_share": null_same_piece_share(labels["pieces"]),
        }
    log.info(
        "K=%d confounds: stratified mu_z %s; genre SD %s%s",
        K,
        {c: round(s["mu_z"], 3) for c, s in strat["summary"].items()},
        {c: None if v["sd_mu_z"] is None else round(v["sd_mu_z"], 3) for c, v in doc["genre"].items()},
        f"; same-piece share {doc['same_piece']['mean_share']:.3f} (null {doc['same_piece']['null_share']:.3f})"
        if "same_piece" in doc
        else "",
    )
    return doc


def homogeneity_doc(S, row_ids, col_ids, ids, feats, channels, null, source, *, confounds=None) -> dict:
    """The homogeneity JSON of one score matrix (docs/spec.md §6).

    Parameters
    ----------
    S : array-like, shape (n_rows, n_queries)
        Scores, rows ``row_ids`` (training items), columns ``col_ids``.
    row_ids, col_ids : array-like of str, shapes (n_rows,) and (n_queries,)
    ids : array-like of str, shape (n_pool,)
        The pool items with features. When they are not ``row_ids`` itself (a track-level audio
        matrix), the rows of the pool are selected; a pool item without a row is an error.
    feats, channels, null
        The pool's features, channels and null (as for :func:`confounds_doc`).
    source : str
        The score file, named in the document and in errors.
    confounds : tuple, optional
        ``(labels, params)``: the pool's labels (or None) and the job's ``main_k``, ``n_groups`` and
        ``seed``; adds the genre and same-piece checks and the empty features at ``main_k``.

    Returns
    -------
    dict
        ``scores``, ``channels``, ``query_ids``, ``ks`` and ``by_k`` (per K: ``summary``,
        ``summary_f``, ``z_c`` per channel, ``top_ids`` (n_queries, K)); ``confounds`` and ``empty``
        when asked.
    """
    from aria.evaluation.homogeneity import homogeneity_table

    if np.array_equal(row_ids, ids):
        tab = homogeneity_table(S, feats, channels, null)
    else:
        # track-level audio matrix: rows are the training tracks with segments; the pool
        # is those with features (a track whose audio features failed is left out)
        where = {r: i for i, r in enumerate(row_ids)}
        missing = [t for t in ids if t not in where]
        if missing:
            raise ValueError(f"{source}: no score row for pool track(s) {some(missing)}")
        sel = np.array([where[t] for t in ids])
        if len(sel) < len(row_ids):
            log.warning("%d score rows have no features and are left out of the pool", len(row_ids) - len(sel))
        tab = homogeneity_table(np.asarray(S[:])[sel], feats, channels, null)
        row_ids = np.asarray(row_ids)[sel]
    out = {
        "scores": str(source),
        "channels": list(channels),
        "query_ids": np.asarray(col_ids).tolist(),
        "ks": list(tab["ks"]),
        "by_k": {},
    }
    for K, t in tab["by_k"].items():
        out["by_k"][str(K)] = {
            "summary": t["summary"],
            "summary_f": t["summary_f"],
            "z_c": {c: np.asarray(z).tolist() for c, z in t["z_c"].items()},
            "top_ids": np.asarray(row_ids)[t["groups"]].tolist(),
        }
        log.info("K=%d: %s", K, {c: round(s["mu_z"], 3) for c, s in t["summary"].items()})
    if confounds is not None and confounds[0] is not None:
        labels, p = confounds
        out["confounds"] = confounds_doc(tab, int(p["main_k"]), col_ids, feats, channels, null, labels, p)
        out["empty"] = empty_doc(tab, int(p["main_k"]), ids, feats, channels, source)
    return out


#: A top-K group whose items are on average more than this share empty in a channel gets a warning.
EMPTY_DOMINATES = 0.5


def empty_doc(tab, K, ids, feats, channels, source) -> dict:
    """Pool items with empty features per channel and feature, and their mean share of G_K (docs/spec.md §5).

    A channel whose top-K groups are on average more than :data:`EMPTY_DOMINATES` empty items is
    ``dominated``: its z-score says little (the items are identical only because nothing was measured).

    Returns
    -------
    dict
        ``k``, ``n_pool``, ``pool_count`` (per channel), ``pool_count_f`` (per feature),
        ``group_share`` (per channel, mean over queries) and ``dominated`` (channels).
    """
    from aria.evaluation.degenerate import empty_features, empty_in_channels, group_empty_share

    per_f = empty_features(feats)
    per_c = empty_in_channels(feats, channels)
    share = {c: float(group_empty_share(tab["by_k"][K]["groups"], m).mean()) for c, m in per_c.items()}
    dominated = [c for c, v in share.items() if v > EMPTY_DOMINATES]
    for c, m in per_c.items():
        if m.any():
            log.info(
                "%d of %d pool items have an empty %s feature, e.g. %s",
                m.sum(),
                len(m),
                c,
                some(np.asarray(ids)[m]),
            )
    if dominated:
        log.warning(
            "%s: at K=%d the top-K groups are on average more than half items with empty %s features",
            source,
            K,
            ", ".join(dominated),
        )
    return {
        "k": int(K),
        "n_pool": len(ids),
        "pool_count": {c: int(m.sum()) for c, m in per_c.items()},
        "pool_count_f": {f: int(m.sum()) for f, m in per_f.items()},
        "group_share": share,
        "dominated": dominated,
    }
