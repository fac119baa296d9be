"""Counts in words for what the archive command says (light: the command imports it for
``--help``)."""

from __future__ import annotations

__all__ = ["counted"]


def counted(n: int, thing: str, things: str = "") -> str:
    """``n`` things, in words: ``1 frame``, ``1,200 frames``, ``3 directories``
    (``things``, when the plural is not ``thing`` + s)."""
    return f"{n:,} {thing if n == 1 else things or thing + 's'}"
