"""The workflow's jobs, one library function each, grouped by concern.

:mod:`~aria.workflow.jobs.corpus` (collections, segments, audio import, tokenization, queries),
:mod:`~aria.workflow.jobs.model` (training, LDS retraining), :mod:`~aria.workflow.jobs.attribution`
(projections, unlearning, scores, embeddings), :mod:`~aria.workflow.jobs.evaluation` (diagnostics,
LDS, features, homogeneity, residual, planted), :mod:`~aria.workflow.jobs.report` (report, cards) and
:mod:`~aria.workflow.jobs.system` (the JIT template). The contract is in :mod:`~aria.workflow.jobs.base`.
"""

from __future__ import annotations

import importlib

from aria.workflow.jobs.base import JOBS, Job, JobArgs

__all__ = ["JOBS", "Job", "JobArgs", "all_jobs", "MODULES"]

MODULES = ("corpus", "model", "attribution", "diffusion", "evaluation", "report", "system")


def all_jobs() -> dict[str, Job]:
    """Every job by command name (imports the job modules once)."""
    for m in MODULES:
        importlib.import_module(f"aria.workflow.jobs.{m}")
    return JOBS
