"""Opt-out keywords: an inbound SAIR, PARAR, STOP or CANCELAR stops every future send."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

DEFAULT_OPT_OUT_KEYWORDS = ("SAIR", "PARAR", "STOP", "CANCELAR")


def normalise(text: str) -> str:
    """Upper-case, accents removed, surrounding spaces and punctuation stripped."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.strip().strip(".!?,;").strip().upper()


def is_opt_out(text: str, keywords: Iterable[str] = DEFAULT_OPT_OUT_KEYWORDS) -> bool:
    """Whether a whole inbound message is an opt-out keyword (case/accent-insensitive)."""
    return normalise(text) in {normalise(k) for k in keywords}
