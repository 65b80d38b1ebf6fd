"""One error root for disparo, and the tree users and operators see.

Every error carries a plain-words message that names what is wrong and what to do.
Driver errors (aiohttp, sqlite3, asyncpg) are wrapped at the boundary with
``raise ... from exc`` and never escape an adapter or a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The CLI's exit codes (INTERFACES.md): success, a problem in the user's input (flow,
# config, CSV), a usage error, the store or a provider out of reach, and a database
# that needs `disparo migrate` (a script runs it on 4, and pages someone on 3).
EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_MIGRATE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it
EXIT_BUG = 70  # an error disparo did not expect: a bug (sysexits.h EX_SOFTWARE)


class DisparoError(Exception):
    """Root of every error disparo raises on purpose."""

    code = "INTERNAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One pointed problem in a user's file: ``file:line:col: message``."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None  # dotted location inside the document, e.g. steps.lembrete.send

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        return f"{where}: {self.message}"


class UserInputError(DisparoError):
    """A problem in what the user wrote (flow, config, CSV, request); exit code 1."""

    code = "VALIDATION_ERROR"

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        return "\n".join(str(p) for p in self.problems)


class UsageError(DisparoError):
    """A command-line flag with a value the command cannot take (``--at tomorrow``,
    ``--keep 1d``); exit code 2, as argparse gives for ``--port 0``."""

    code = "USAGE"


class FlowError(UserInputError):
    """A flow file is invalid; ``problems`` holds every finding of one pass."""


class ConfigError(UserInputError):
    """The configuration file is invalid."""


class RenderError(DisparoError):
    """A template could not be rendered; names the flow, step and field. Nothing is sent."""

    code = "RENDER_ERROR"

    def __init__(self, message: str, *, flow: str = "", step: str = "", field: str = "") -> None:
        self.flow, self.step, self.field = flow, step, field
        where = "/".join(p for p in (flow, step, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class ContentError(DisparoError):
    """Rendered content breaks a channel limit; names the field and the limit."""

    code = "CONTENT_ERROR"

    def __init__(self, violations: list[ContentViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentViolation:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class NotFound(DisparoError):
    code = "NOT_FOUND"


class Conflict(DisparoError):
    code = "CONFLICT"


class StoreError(DisparoError):
    """The store failed in a way that is not the caller's fault."""

    code = "STORE_ERROR"


class StoreUnavailable(StoreError):
    """The store cannot be reached or is locked/full right now; retry later (HTTP 503)."""

    code = "STORE_UNAVAILABLE"


class SchemaOutdated(StoreError):
    """The database has migrations that were not applied yet; run `disparo migrate`."""

    code = "SCHEMA_OUTDATED"


class StaleFence(StoreError):
    """A worker tried to complete due work whose lease was taken over by a newer claim."""

    code = "STALE_FENCE"


class StaleRun(StoreError):
    """The run changed since it was read (optimistic concurrency); re-read and retry."""

    code = "STALE_RUN"
    # What the request that met it did, for its 409: every API write is one commit,
    # but a contact's cancel commits run by run (``engine.run_cancel``).
    outcome = "the request changed nothing"


# How often a change refused with ``StaleRun`` is read again and retried before giving up.
MAX_STALE_RETRIES = 8


class OutboundChanged(DisparoError):
    """A ``sending`` commit's ``OutboundGuard`` failed: another send to the contact
    left or began leaving since the rules counted; nothing was written. Decide again."""

    code = "OUTBOUND_CHANGED"


class ProviderError(DisparoError):
    """A provider call failed.

    ``retryable`` says whether the same message may be tried again; ``retry_after``
    carries the provider's hint in seconds; ``left`` says whether the request may have
    reached the provider (True makes a blind resend unsafe without an idempotency key).
    ``vendor_message`` is the vendor's own words, stored on the message for operators.
    """

    code = "PROVIDER_ERROR"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        vendor_message: str | None = None,
        retry_after: float | None = None,
        left: bool = True,
    ) -> None:
        self.status = status
        self.vendor_message = vendor_message
        self.retry_after = retry_after
        self.left = left
        super().__init__(message)


class ProviderUnreachable(ProviderError):
    """The connection was refused or could not be made: the request never left."""

    code = "PROVIDER_UNREACHABLE"
    retryable = True

    def __init__(self, message: str, **kw: object) -> None:
        kw.setdefault("left", False)
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ProviderRateLimited(ProviderError):
    """429: wait for ``retry_after`` before trying again."""

    code = "PROVIDER_RATE_LIMITED"
    retryable = True


class ProviderUnavailable(ProviderError):
    """5xx or a timeout before the request left: back off and retry."""

    code = "PROVIDER_UNAVAILABLE"
    retryable = True


class ProviderRejected(ProviderError):
    """4xx: final; the vendor's message is kept for operators."""

    code = "PROVIDER_REJECTED"


class ProviderDiscarded(ProviderRejected):
    """The provider's own guard held the message back, as the flow asked it to (Robbu
    ``discardSettings.InAttendance``: the contact is in attendance there). Not a
    failure: the flow's ``rule`` (``in_attendance``) decides, skip or defer."""

    code = "PROVIDER_DISCARDED"

    def __init__(self, message: str, *, rule: Literal["in_attendance"], **fields: Any) -> None:
        self.rule: Literal["in_attendance"] = rule
        super().__init__(message, **fields)


class ProviderAuthError(ProviderError):
    """Credentials were refused (after any re-login the adapter is allowed)."""

    code = "PROVIDER_AUTH"


class ProviderAmbiguous(ProviderError):
    """The request left but no usable answer came back (timeout, reset, garbage 200).

    The message may or may not have been sent; it is never resent blindly to a
    provider without an idempotency key.
    """

    code = "PROVIDER_AMBIGUOUS"
    retryable = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldError:
    field: str
    message: str


@dataclass(kw_only=True)
class RequestError(DisparoError):
    """A bad HTTP API request, mapped to a JSON error body."""

    status: int
    code: str
    message: str
    details: list[FieldError] = field(default_factory=list)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    @classmethod
    def bad_field(cls, field_name: str, problem: str, message: str) -> RequestError:
        """A 400 ``VALIDATION_ERROR`` about one field: ``message`` says what is wrong with
        the request, ``problem`` what is wrong with ``field_name``."""
        return cls(
            status=400,
            code="VALIDATION_ERROR",
            message=message,
            details=[FieldError(field=field_name, message=problem)],
        )
