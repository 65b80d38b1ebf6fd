"""Opt-out keywords: an inbound SAIR, PARAR, STOP or CANCELAR stops every future send."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

DEFAULT_OPT_OUT_KEYWORDS = ("SAIR", "PARAR", "STOP", "CANCELAR")


def normalise(text: str) -> str:
    """Upper-case, accents removed, runs of spaces made one, and the punctuation and
    symbols around the words stripped: WhatsApp users bold (``*SAIR*``), quote or add
    an emoji (``SAIR 👋``), and the message is still only the keyword. A text of
    symbols only (an emoji keyword) keeps them."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())
    start, end = 0, len(bare)
    while start < end and _edge(bare[start]):
        start += 1
    while end > start and _edge(bare[end - 1]):
        end -= 1
    return (bare[start:end] if start < end else bare).upper()


def _edge(char: str) -> bool:
    """Punctuation, a symbol (emoji included), a space or an invisible format mark."""
    return char.isspace() or unicodedata.category(char)[0] in "PSZ" or char in _INVISIBLE


_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\ufe0f", "\u2060"}


def is_opt_out(text: str, keywords: Iterable[str] = DEFAULT_OPT_OUT_KEYWORDS) -> bool:
    """Whether a whole inbound message is an opt-out keyword (case/accent-insensitive)."""
    return normalise(text) in _normalised(tuple(keywords))


@lru_cache(maxsize=64)
def _normalised(keywords: tuple[str, ...]) -> frozenset[str]:
    """The keywords as ``normalise`` writes them, once per keyword list."""
    return frozenset(normalise(k) for k in keywords)
