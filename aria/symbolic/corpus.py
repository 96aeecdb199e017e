"""Pure helpers for building corpora: demo selection, synthetic dynamics, truncation."""

from __future__ import annotations

import numpy as np

from aria.symbolic.notes import NOTE_DTYPE

__all__ = ["quotas", "demo_collections", "eval_quotas", "truncate_notes", "synthetic_dynamics"]


def quotas(total: int, n_groups: int) -> list[int]:
    """Split ``total`` items as evenly as possible over ``n_groups`` (first ones get more)."""
    base, rem = divmod(int(total), int(n_groups))
    return [base + (i < rem) for i in range(n_groups)]


def demo_collections(demo: dict) -> dict[str, int]:
    """The collections ``corpus.demo`` takes pieces from: those asked for at least one piece.

    A count of 0 leaves a collection out, so that a config overlay (merged key by key onto the
    demo's, as Snakemake merges config files) can replace the demo's collections.
    """
    return {k: int(v) for k, v in (demo.get("collections") or {}).items() if int(v) > 0}


def eval_quotas(collections, total: int) -> dict[str, int]:
    """Held-out pieces per collection: ``total`` spread evenly, the extra ones to the
    alphabetically first names (independent of the order the collections are listed in).
    """
    names = sorted(collections)
    return dict(zip(names, quotas(total, len(names))))


def truncate_notes(notes: np.ndarray, max_duration_s: float) -> np.ndarray:
    """Keep notes starting before ``max_duration_s``; clip their offsets to it.

    Parameters
    ----------
    notes : NOTE_DTYPE array, shape (n,)
        Onsets and offsets in seconds.
    max_duration_s : float
        Cut point in seconds.

    Returns
    -------
    NOTE_DTYPE array, shape (m,), m <= n
        A copy; notes left with zero duration are dropped.
    """
    notes = np.asarray(notes, dtype=NOTE_DTYPE)
    out = notes[notes["onset"] < max_duration_s].copy()
    out["offset"] = np.minimum(out["offset"], max_duration_s)
    return out[out["offset"] > out["onset"]]


def synthetic_dynamics(notes: np.ndarray, *, beats: np.ndarray, random_state) -> np.ndarray:
    """Seeded performance dynamics for scores that carry no velocity information.

    Many bundled scores have no dynamic markings, so every note would get the same
    MIDI velocity and the dynamic channel would be constant. This draws, per
    piece, a base level, a metric accent on beat 1 of each 4-beat group, a
    linear crescendo/decrescendo over the piece, and small per-note jitter:

        v = clip(base + accent * [beat % 4 == 0] + slope * t/T + jitter, 1, 127)

    with base ~ U(45, 100), accent ~ U(0, 20), slope ~ U(-25, 25), jitter ~ U{-3..3}.
    Documented in docs/methods.md as synthetic; it gives the demo a dynamic channel, it is
    not a claim about how the pieces are performed.

    Parameters
    ----------
    notes : NOTE_DTYPE array, shape (n,)
        One piece; onsets and offsets in seconds.
    beats : float array, shape (n,), keyword-only
        Onset of each note in beats (from :func:`aria.symbolic.notes.seconds_to_beats`).
    random_state : int or numpy Generator, keyword-only
        Seeds ``np.random.default_rng``: base, accent and slope are drawn first, then the jitter.

    Returns
    -------
    NOTE_DTYPE array (n,), a copy with new velocities.
    """
    rng = np.random.default_rng(random_state)
    base, accent, slope = rng.uniform(45, 100), rng.uniform(0, 20), rng.uniform(-25, 25)
    out = np.asarray(notes, dtype=NOTE_DTYPE).copy()
    if out.size == 0:
        return out
    t = out["onset"] / max(float(out["offset"].max()), 1e-9)
    on_downbeat = np.isclose(np.mod(beats, 4.0), 0.0, atol=1e-3) | np.isclose(np.mod(beats, 4.0), 4.0, atol=1e-3)
    v = base + accent * on_downbeat + slope * t + rng.integers(-3, 4, size=out.size)
    out["velocity"] = np.clip(np.round(v), 1, 127).astype(np.int16)
    return out
