"""What each setting cost to compute (docs/spec.md §7): time, CPU or device hours, memory and disk.

Input per report row: the benchmark records (:func:`aria.io.tables.read_benchmark`) of the
jobs that produced its score matrix -- ``attribution`` (scoring, gradient projection,
covariance, embedding) and ``training`` (the models it reads) -- and the bytes of its stores.
Jobs shared by several rows (one feature store read by TRAK and Grad-Cos, one trained model)
are counted in full for each row that needs them: a row's cost is what it would take to
compute that row alone.

Units: seconds (``wall_s``), hours (``cpu_h``, ``device_h``), MB (``peak_rss_mb``,
``disk_mb``; 1 MB = 10^6 bytes as Snakemake reports memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["row_cost"]


def row_cost(
    attribution: Sequence[Mapping | None],
    training: Sequence[Mapping | None] = (),
    *,
    store_bytes: int = 0,
    device: str = "cpu",
) -> dict:
    """Totals of one row.

    Parameters
    ----------
    attribution, training : sequences of benchmark dicts (``None`` = the file is absent)
    store_bytes : int, keyword-only
        Bytes of the row's score store and the feature stores it reads.
    device : {"cpu", "cuda"}, keyword-only
        Where projection and training ran: ``device_h`` is their wall-clock hours on it
        (GPU-hours with ``cuda``; with ``cpu`` it equals the wall-clock hours).

    Returns
    -------
    dict
        ``wall_s`` (attribution jobs), ``train_wall_s``, ``cpu_h`` (attribution + training CPU
        time), ``device_h``, ``peak_rss_mb`` (largest over all jobs), ``disk_mb``, ``n_jobs``
        and ``n_missing`` (benchmark files not found: the totals are then lower bounds).
    """
    att = [b for b in attribution if b]
    tr = [b for b in training if b]
    allb = att + tr
    wall = sum(b.get("s", 0.0) for b in att)
    train = sum(b.get("s", 0.0) for b in tr)
    return {
        "wall_s": wall,
        "train_wall_s": train,
        "cpu_h": sum(b.get("cpu_time", 0.0) for b in allb) / 3600.0,
        "device": device,
        "device_h": (wall + train) / 3600.0,
        "peak_rss_mb": max((b.get("max_rss", 0.0) for b in allb), default=0.0),
        "disk_mb": store_bytes / 1e6,
        "n_jobs": len(allb),
        "n_missing": (len(attribution) - len(att)) + (len(training) - len(tr)),
    }
