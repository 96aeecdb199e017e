"""Grad-Cos (docs/spec.md §2): S[j, q] = phi(z_j) . phi(q) / (|phi(z_j)| |phi(q)|); zero-norm rows score 0."""

from __future__ import annotations

from aria.attribution.linalg import unit_rows


def operators(feats, params):
    """``(rows, ops)`` with S = rows[0] @ ops[0] on unit-normalized features."""
    if len(feats) != 1:
        raise ValueError(f"gradcos uses exactly one checkpoint, got {len(feats)}")
    return [unit_rows(feats[0]["train"])], [unit_rows(feats[0]["query"]).T]
