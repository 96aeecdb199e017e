"""User commands: Aria's diagnostics on score matrices computed anywhere.

``aria diagnose PATH [--replica PATH] [--json] [--transpose]``
    The four docs/spec.md §4 diagnostics of a matrix in any format of
    :mod:`aria.io.matrices` (zarr streamed chunk by chunk), and a one-line reading.
``aria import-scores PATH --rows ROWS --cols COLS --out STORE``
    Convert a matrix into an Aria score store, checked against id lists.
``aria export-scores STORE --to dattri|npy --out FILE``
    A score store in dattri's orientation and format (train x test tensor), ids beside it.
``aria registry``
    The registered methods, stages and encoders.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from aria.io.matrices import EXPORT_FORMATS

log = logging.getLogger("aria")


def cmd_diagnose(a) -> None:
    """Reliability diagnostics (r1, r2_5, c_bar, rho_bar) of a score matrix you computed: zarr, .npy, .npz, .pt, .csv.

    Rows are training items and columns queries (--transpose for the other
    orientation). Zarr stores are streamed, never loaded whole. With --json,
    prints exactly one JSON object with keys r1, r2_5, c_bar, rho_bar, n_rows,
    n_cols, source (rho_bar is null when undefined: fewer than two columns vary).
    The reading also uses r1 with each query's mean removed, from the same pass
    (:func:`aria.evaluation.reliability.centred_diagnostics`). With --replica, the same
    method's matrix from an independently trained model: their agreement
    (:func:`aria.evaluation.agreement.replica_agreement`, key ``replica`` with --json) and a
    "noisy" reading when the rankings do not survive retraining.
    """
    from aria.evaluation.reliability import centred_diagnostics, gram_stats, reading, reliability_from_stats
    from aria.io.matrices import check_matrix, open_matrix

    m = open_matrix(a.path, transpose=a.transpose)
    check_matrix(m)
    n, q = m.shape
    if q < 2 or n < 2:  # before streaming a large store for a matrix that cannot be scored
        raise ValueError(f"{m.source}: diagnostics need at least 2 rows and 2 columns, got shape {m.shape}")
    stats = gram_stats(m.data, progress=not a.json, source=m.source)
    res = reliability_from_stats(stats)
    cen = centred_diagnostics(stats)
    rep = None
    if a.replica:
        from aria.evaluation.agreement import replica_agreement

        r = open_matrix(a.replica, transpose=a.transpose)
        check_matrix(r)
        if r.shape != m.shape:
            raise ValueError(f"{r.source}: replica has shape {r.shape}, {m.source} has {m.shape}; they must match")
        rep = replica_agreement(m.data, r.data, progress=not a.json, source_a=m.source, source_b=r.source)
    if a.json:
        out = {k: (None if np.isnan(v) else v) for k, v in res.items()}
        if rep is not None:
            out["replica"] = _nan_to_none(rep)
        print(json.dumps({**out, "n_rows": n, "n_cols": q, "source": m.source}))
        return
    print(f"{m.source}: {n} training rows x {q} query columns")
    for k, label in (
        ("r1", "r1     (top singular direction's share of energy)"),
        ("r2_5", "r2:5   (directions 2-5)"),
        ("c_bar", "c_bar  (share of each query's energy in its mean)"),
        ("rho_bar", "rho_bar (mean |correlation| between queries)"),
    ):
        v = res[k]
        print(f"  {label:<52} " + ("undefined (no two columns vary)" if np.isnan(v) else f"{v:.4f}"))
    if cen["n_constant"]:
        print(f"  {cen['n_constant']} of {q} columns are constant (all scores tied)")
    if rep is not None:
        sp, pe = rep["spearman"], rep["pearson"]
        print(f"replica {a.replica}: how much of the ranking survives (two independently trained models)")
        print(f"  {'Spearman per query: median (q10 .. q90)':<52} {sp['q50']:.4f} ({sp['q10']:.4f} .. {sp['q90']:.4f})")
        print(f"  {'Pearson per query: median':<52} {pe['q50']:.4f}")
        print(f"  {'shared score energy':<52} {rep['shared_energy']:.4f}")
        sh = rep["shared"]
        print(
            f"  {'shared part: r1, r2:5, c_bar, rho_bar':<52} "
            + ", ".join("undefined" if np.isnan(sh[k]) else f"{sh[k]:.4f}" for k in ("r1", "r2_5", "c_bar", "rho_bar"))
        )
    print("reading:", reading({**res, **cen, "q": q, "n": n, "replica": rep}))


def _nan_to_none(x):
    """``x`` with every NaN float replaced by None (strict JSON: --json prints null, never NaN)."""
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and np.isnan(x) else x


def cmd_import_scores(a) -> None:
    """Convert a score matrix (zarr, .npy, .npz, .pt, .csv) into an Aria score store, checked against id lists.

    --rows and --cols name the training-item and query ids, one per line (or a
    CSV whose first column holds them). The shape must match them (or their
    transpose, with --transpose); NaN and Inf are rejected. Nothing is written
    unless the whole matrix passes.
    """
    from aria.io.matrices import align, check_matrix, open_matrix, take_rows
    from aria.io.stores import ScoreWriter
    from aria.io.tables import read_id_list

    m = open_matrix(a.path, transpose=a.transpose)
    rows, cols = check_matrix(m, row_ids=read_id_list(a.rows), col_ids=read_id_list(a.cols), min_cols=1)
    # rows/columns in the workflow's order when its segments/queries are given (the workflow's rule)
    ridx = align(rows, read_id_list(a.expect_rows), what="row", source=m.source) if a.expect_rows else None
    cidx = align(cols, read_id_list(a.expect_cols), what="column", source=m.source) if a.expect_cols else None
    out_rows = rows if ridx is None else rows[ridx]
    out_cols = cols if cidx is None else cols[cidx]
    chunk = max(1, (1 << 22) // max(1, len(cols)))
    attrs = {"method": a.name or "external", "source": m.source}
    with ScoreWriter(a.out, out_rows, out_cols, attrs=attrs) as w:
        for start in range(0, len(out_rows), chunk):
            stop = min(start + chunk, len(out_rows))
            block = take_rows(m.data, ridx[start:stop]) if ridx is not None else np.asarray(m.data[start:stop])
            if cidx is not None:
                block = block[:, cidx]
            bad = ~np.isfinite(block)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise ValueError(
                    f"{m.source}: {int(bad.sum())} non-finite value(s) (NaN/Inf) in rows "
                    f"{start}..{stop - 1}; first at row {str(out_rows[start + i])!r}, "
                    f"column {str(out_cols[j])!r}: {block[i, j]}"
                )
            w.write(start, block)
    log.info("imported %s (%d x %d) -> %s", m.source, len(rows), len(cols), a.out)


def cmd_export_scores(a) -> None:
    """Export an Aria score store for another tool: dattri's (N, Q) float32 tensor (.pt) or .npy.

    The ids go beside the matrix as <out>.rows.txt and <out>.cols.txt, so that
    ``aria import-scores OUT --rows OUT.rows.txt --cols OUT.cols.txt`` gives the store back.
    """
    from aria.io.matrices import write_exported
    from aria.io.stores import iter_row_chunks, open_scores

    S, rows, cols = open_scores(a.store)
    paths = write_exported(a.out, iter_row_chunks(S), shape=S.shape, row_ids=rows, col_ids=cols, to=a.to)
    log.info("exported %s (%d x %d, training items x queries) -> %s", a.store, *S.shape, ", ".join(map(str, paths)))


def cmd_registry(a) -> None:
    """Print the registered methods, stages and encoders (JSON)."""
    from aria import registry

    print(json.dumps(registry.describe(), indent=2))


COMMANDS = {
    "diagnose": (
        cmd_diagnose,
        [
            ("path", {"help": "score matrix: .zarr, .npy, .npz, .pt/.pth or .csv"}),
            ("--json", {"action": "store_true", "required": False, "help": "print exactly one JSON object"}),
            ("--transpose", {"action": "store_true", "required": False, "help": "the file stores queries as rows"}),
            (
                "--replica",
                {
                    "required": False,
                    "default": None,
                    "help": "the same method's matrix from an independently trained model (another seed): "
                    "the noise diagnostic",
                },
            ),
        ],
    ),
    "import-scores": (
        cmd_import_scores,
        [
            ("path", {"help": "score matrix: .zarr, .npy, .npz, .pt/.pth or .csv"}),
            ("--rows", {"help": "training-item ids, one per line"}),
            ("--cols", {"help": "query ids, one per line"}),
            ("--out", {"help": "the Aria score store to write (.zarr)"}),
            ("--name", {"required": False, "default": None, "help": "method name recorded in the store"}),
            (
                "--expect-rows",
                {
                    "required": False,
                    "default": None,
                    "help": "ids (or an Aria .npz) giving the row order "
                    "to write; the file's rows must be exactly these",
                },
            ),
            ("--expect-cols", {"required": False, "default": None, "help": "the same for the columns (queries)"}),
            ("--transpose", {"action": "store_true", "required": False, "help": "the file stores queries as rows"}),
        ],
    ),
    "export-scores": (
        cmd_export_scores,
        [
            ("store", {"help": "an Aria score store (.zarr)"}),
            ("--to", {"choices": list(EXPORT_FORMATS), "help": "dattri: (N, Q) float32 tensor, .pt; npy: .npy"}),
            ("--out", {"help": "the file to write (.pt for dattri, .npy)"}),
        ],
    ),
    "registry": (cmd_registry, []),
}
