"""How long a secret that callers present must be: ``api_token`` and a provider's
``webhook_secret``, which anyone who reaches the port may try to guess, and which the
logs redact only from 4 characters on. 16 characters are enough to stop guessing
(16 random URL-safe ones hold 96 bits) and fit any generated token, a UUID's 32 hex
digits to a password manager's; a word, a name or ``dev-token`` are refused."""

from __future__ import annotations

MIN_LENGTH = 16
MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def too_short(secret: str, set_it: str, then: str = "") -> str | None:
    """None when ``secret`` has ``MIN_LENGTH`` characters or more, else what is wrong,
    saying where to ``set_it`` (and what to do ``then``), never the secret nor its
    length."""
    if len(secret) >= MIN_LENGTH:
        return None
    return (
        f"is shorter than {MIN_LENGTH} characters: anyone who reaches the port could "
        f"guess it; {set_it} a long random one, such as `{MAKE_ONE}` prints{then}"
    )
