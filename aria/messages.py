"""Wording shared by error and log messages."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["some"]


def some(items: Iterable, n: int = 5) -> str:
    """The first ``n`` items as a list, then how many more there are.

    >>> some(["a", "b"])
    "['a', 'b']"
    >>> some(range(8), 3)
    '[0, 1, 2] and 5 more'
    """
    items = [x.item() if hasattr(x, "item") else x for x in items]
    shown = repr(items[:n])
    return shown if len(items) <= n else f"{shown} and {len(items) - n} more"
