"""Wording shared by error and log messages."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["some", "and_more"]


def some(items: Iterable, n: int = 5) -> str:
    """The first ``n`` items as a list, then how many more there are.

    >>> some(["a", "b"])
    "['a', 'b']"
    >>> some(range(8), 3)
    '[0, 1, 2] and 5 more'
    """
    items = [x.item() if hasattr(x, "item") else x for x in items]
    return repr(items[:n]) + and_more(len(items), n)


def and_more(total: int, shown: int) -> str:
    """``" and N more"`` when ``shown`` of ``total`` items were listed, else ``""``."""
    return f" and {total - shown} more" if total > shown else ""
