"""Seeds derived from names, so that results never depend on the order of a list or mapping."""

from __future__ import annotations

import hashlib

__all__ = ["stable_seed"]


def stable_seed(seed: int, key: str) -> int:
    """A 63-bit seed derived from ``(seed, key)``, stable across runs and platforms.

    Use it to give each item (a piece, a collection) its own random state independent of
    the order in which items are listed or processed, e.g.
    ``assign_programs(4, random_state=stable_seed(cfg_seed, track_id))``.
    """
    digest = hashlib.blake2b(f"{int(seed)}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
