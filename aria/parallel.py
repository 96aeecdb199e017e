"""Where the matrix work runs: numpy streaming, or a dask scheduler (config ``compute``).

``compute.engine`` chooses how score matrices are computed: ``numpy`` (default) streams
row blocks through one process; ``dask`` builds the same blocks as a dask graph over
the feature store's zarr chunks and writes them in parallel. ``compute.scheduler``
chooses where a dask graph runs:

``threads`` (default)
    dask's threaded scheduler in the job's own process, with the job's threads;
``synchronous``
    one thread, in order (debugging);
``tcp://host:port`` (any address with ``://``)
    a running ``dask.distributed`` scheduler: a ``LocalCluster``, or one started on
    SLURM with dask-jobqueue (docs/cluster.md). Its workers must see the same files.

The scheduler never changes a number; the engine changes them at most by float
round-off (sums over chunks in another order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ENGINES", "dask_scheduler"]

#: Values of ``compute.engine``.
ENGINES = ("numpy", "dask")


@contextmanager
def dask_scheduler(spec: str | None = "threads", *, threads: int = 1, timeout: str = "30s") -> Iterator[object]:
    """Run the dask computations inside the ``with`` block on scheduler ``spec``.

    Parameters
    ----------
    spec : str or None
        ``"threads"`` (or None/empty), ``"synchronous"``, or a distributed scheduler
        address containing ``://``.
    threads : int, keyword-only
        Worker threads of the threaded scheduler (the job's ``--threads``).
    timeout : str, keyword-only
        How long to try to reach a distributed scheduler.

    Yields
    ------
    the ``distributed.Client`` for an address, else None.
    """
    import dask

    spec = (spec or "threads").strip()
    if spec == "threads":
        with dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
            yield None
    elif spec == "synchronous":
        with dask.config.set(scheduler="synchronous"):
            yield None
    elif "://" in spec:
        from distributed import Client

        try:
            client = Client(spec, timeout=timeout, set_as_default=False)
        except OSError as exc:
            raise RuntimeError(f"compute.scheduler {spec!r}: no dask scheduler answers there ({exc})") from exc
        try:
            with dask.config.set(scheduler=client.get):
                yield client
        finally:
            client.close()
    else:
        raise ValueError(
            f"compute.scheduler must be 'threads', 'synchronous' or an address like tcp://host:8786, got {spec!r}"
        )
