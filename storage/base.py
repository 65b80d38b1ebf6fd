"""The Store protocol: everything disparo keeps, in domain verbs (never SQL strings).

Every backend (``storage.sqlite.SQLiteStore``, ``storage.postgres.PostgresStore``)
implements this protocol and passes the same contract suite in ``tests/contract``.

Guarantees every implementation gives:

- ``commit`` is atomic: all of a ``Commit`` is written or none of it.
- Due work is claimed with a lease and a fence: ``claim_due_work`` bumps the row's
  fence; a ``Commit`` that completes or reschedules a claimed row names the fence it
  saw and raises ``StaleFence`` (writing nothing) when a newer claim took the row.
- Runs use optimistic concurrency: a ``RunChange`` names the version it read and
  raises ``StaleRun`` (writing nothing) when the run moved on.
- Run creation is idempotent: a ``NewRun`` whose idempotency key exists writes
  nothing and returns the existing run with ``created=False``.
- Message statuses are monotonic (``engine.models.status_can_advance``); a change
  that would move a status backwards is dropped (not an error) unless ``force``.
- A status report for a provider message id not yet recorded is kept and becomes
  due work in the same transaction that records that id.
- Triggers: a cron firing (``Commit.firing``) is recorded once, ever; trigger rows
  (CRON, SWEEP) are unique by key (``schedule_triggers``); contact pages come in a
  stable order (ids byte-wise, or (timestamp, id)) so a cursor resumes them exactly.
- State providers share (rate budgets, renewable credentials) is one row per name
  per database: every process on the database takes slots of the same budget and
  renews the same credential, each decision made under that row's lock.
- Errors of the driver never escape: an unreachable/locked/full database raises
  ``StoreUnavailable``; pending migrations raise ``SchemaOutdated`` on ``open``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from engine.models import (
    Contact,
    ContactEvent,
    ContactUpsert,
    DueWork,
    Event,
    Message,
    MessageStatus,
    NewDueWork,
    NewEvent,
    Run,
    StatusReport,
)
from engine.shared_state import CredentialRenewal, ProviderCredential, RateSlot

# The records of a commit live in ``storage.changes``; the engine reaches them here.
from storage.changes import (
    Commit,
    CommitResult,
    Completion,
    ContactChange,
    MessageChange,
    NewMessage,
    NewRun,
    OutboundGuard,
    RunChange,
    TriggerFiring,
    reported_change,
)
from storage.erasure import Erased
from storage.overview import DueCounts, LeaseCounts, OpenRunReads, Overview
from storage.purged import Purged
from storage.run_message_reads import RunMessageReads
from storage.trigger_state import StoredTrigger, TriggerStateReads

__all__ = [
    "BulkStart",
    "BulkStartResult",
    "Commit",
    "CommitResult",
    "Completion",
    "ContactChange",
    "ContactTimestamp",
    "DueCounts",
    "Erased",
    "IngestOutcome",
    "LeaseCounts",
    "MessageChange",
    "NewMessage",
    "NewRun",
    "OutboundGuard",
    "Overview",
    "Purged",
    "RunChange",
    "RunIgnores",
    "StartRequest",
    "StatusTarget",
    "Store",
    "StoredTrigger",
    "TriggerFiring",
    "reported_change",
]

# The contact timestamps a re-engagement sweep (`after` + `since`) can count from.
ContactTimestamp = Literal["last_inbound_at", "last_interaction_at", "last_outbound_at"]


# One run a bulk start wants: (contact id, idempotency key, data logged with
# ``run.started`` at entry). Plain tuples: a sweep builds thousands of them per second.
StartRequest = tuple[str, str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkStart:
    """Runs of one flow (version) to start at ``now`` for stored contacts, one per request.

    Each run is created not yet entered (status ``active``, no step), with a START
    due-work row due at ``now`` whose payload is the data of the run's
    ``run.started`` event (``flow``, ``version``, ``trigger`` and the request's data):
    the dispatcher writes that event, dated at the run's creation, when it enters
    the run's first step.

    ``contacts``, when given, holds each request's contact (same order, same id):
    a request that starts a run first writes its contact exactly as
    ``Store.upsert_contact`` would (``None`` fields keep what is stored, context
    merged key by key, in request order); a request that starts nothing (its key
    started a run before, or it is refused) leaves its contact untouched. Without
    ``contacts`` every request's contact must be stored already.
    """

    flow: str
    flow_version: str
    trigger: str  # what started the runs: "cron", "after", "event", "csv", ...
    exclusive: bool  # the flow's `concurrency: one`: one open run per (contact, flow)
    now: datetime
    requests: Sequence[StartRequest]
    contacts: Sequence[ContactUpsert] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkStartResult:
    started: int = 0  # runs created now
    existing: int = 0  # requests whose key had started a run before (or earlier in the batch)
    # Contacts of requests refused because the contact had an open run of the flow
    # (each recorded as ``run.trigger_skipped``, once per key), in request order.
    already_active: tuple[str, ...] = ()


IngestOutcome = Literal["queued", "applied", "pending", "duplicate", "unknown_contact"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusTarget:
    """A status report matched to its message, as ``ingest_status_reports`` offers it
    to ``run_ignores``: the message as stored, the reported status, the message's run."""

    message_id: str
    message_status: MessageStatus  # as stored; ``status`` can advance from it
    message_step_seq: int
    provider: str
    status: MessageStatus  # the reported one
    run: Run


# Asked by ``Store.ingest_status_reports`` whether a report can be applied at once.
RunIgnores = Callable[[StatusTarget], Sequence[NewEvent] | None]


class Store(TriggerStateReads, OpenRunReads, RunMessageReads, Protocol):
    # Where the data lives, for messages: a file's path, or host:port/database and
    # the schema (never who logs in).
    where: str

    # -- lifecycle
    async def open(self) -> None:
        """Connect; raise ``SchemaOutdated`` when migrations are pending."""

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied (empty when up to date)."""

    async def pending_migrations(self) -> list[str]: ...

    async def ping(self) -> None:
        """Return when the store answers; raise ``StoreUnavailable`` otherwise."""

    async def health(self) -> None:
        """``ping``, and raise ``StoreUnavailable`` too when the store answers but could
        not record a change now (a read-only database, a full disk): ``GET /healthz``."""

    async def database_time(self) -> datetime | None:
        """The database server's clock, which processes sharing it compare theirs with;
        None for a store with no clock of its own (a SQLite file)."""

    # -- contacts
    async def upsert_contact(self, upsert: ContactUpsert, now: datetime) -> Contact: ...

    async def get_contact(self, contact_id: str) -> Contact | None: ...

    async def get_contacts(self, contact_ids: Sequence[str]) -> dict[str, Contact]: ...

    async def find_contact_by_phone(self, phone: str) -> Contact | None: ...

    async def find_contacts_by_phone(self, phone: str) -> list[Contact]:
        """Every contact with this phone, oldest first (phones are not unique)."""

    async def find_phone_opt_outs(self, phone: str, before: datetime) -> list[Contact]:
        """The contacts with this phone whose opt-out is at or before ``before``,
        earliest opt-out first (then by id): what a send checks, without decoding
        the phone's contacts that never opted out."""

    # -- flows (runs are pinned to the exact file they started with)
    async def save_flow_version(self, flow: str, version: str, source: str) -> None: ...

    async def get_flow_source(self, flow: str, version: str) -> str | None: ...

    # -- runs, messages, events
    async def commit(self, commit: Commit) -> CommitResult: ...

    async def start_run(
        self,
        upsert: ContactUpsert,
        *,
        key: str | None,
        flow: str,
        exclusive: bool,
        now: datetime,
        build: Callable[[Contact], Commit],
    ) -> CommitResult:
        """Write the contact and start one run of ``flow`` for it.

        A ``key`` that started a run before returns that run (``created`` False) and
        writes nothing, the contact included. For an ``exclusive`` flow, a contact
        with an open run of ``flow`` raises ``Conflict`` and writes nothing.
        Otherwise the contact is written as ``upsert_contact`` would, ``build`` is
        called with it as stored and the ``Commit`` it returns (which creates the
        run) is applied, like ``commit``: on SQLite all of it in one transaction.
        """

    async def get_run(self, run_id: str) -> Run | None: ...

    async def get_run_by_key(self, idempotency_key: str) -> Run | None:
        """The run its creation's idempotency key started, if any."""

    async def list_open_runs(self, contact_id: str) -> list[Run]: ...

    async def list_contact_runs(self, contact_id: str) -> list[Run]:
        """Every run of the contact (open or finished, as long as retention keeps
        it), oldest first: what a copy of the contact's data holds."""

    async def get_message(self, message_id: str) -> Message | None: ...

    async def list_run_messages(self, run_id: str) -> list[Message]: ...

    async def has_queued_status(self, message_id: str) -> bool:
        """Whether a status report of the message is stored and waits as STATUS work
        (received, not applied yet): a send taken over must not go out again then."""

    async def list_ambiguous_messages(self, *, limit: int) -> list[Message]:
        """Messages left ``ambiguous`` (a request that may have reached a provider
        without idempotency keys), oldest first, at most ``limit``."""

    async def find_message(
        self,
        provider: str,
        *,
        provider_message_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Message | None: ...

    async def list_events(
        self,
        *,
        contact_id: str | None = None,
        run_id: str | None = None,
        kind_prefix: str | None = None,
        limit: int = 200,
    ) -> list[Event]:
        """Events newest first."""

    async def count_outbound(self, contact_id: str, since: datetime) -> int:
        """Messages to the contact on their way (``sending``) or that left (sent or
        beyond) at or after ``since``."""

    async def last_outbound_at(
        self, contact_id: str, *, exclude_run: str | None = None
    ) -> datetime | None:
        """When the newest message to the contact left (sent or beyond) or became
        ``sending``, skipping the messages of ``exclude_run``: a flow's own follow-ups
        are not "recent contact"."""

    # -- due work
    async def claim_due_work(
        self, *, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[DueWork]:
        """Claim rows due at ``now`` that nobody holds (or whose ``lease_until < now``):
        the work of runs under way before the work that starts runs (START, FANOUT,
        SWEEP), each oldest due first."""

    async def extend_leases(
        self, *, owner: str, work: Sequence[DueWork], until: datetime
    ) -> set[int]:
        """Extend the leases still held (same owner and fence); return their ids."""

    async def next_due_at(self) -> datetime | None:
        """When the earliest row becomes claimable (due time or lease expiry)."""

    async def bring_sends_forward(self, run_id: str, now: datetime) -> int:
        """Make the run's DISPATCH rows that are due after ``now`` and held by nobody
        due ``now`` (its held sends are decided again at once); how many moved."""

    async def start_runs(self, starts: BulkStart) -> BulkStartResult:
        """Start many runs in one transaction (the bulk path of triggers).

        Per request, in order: a key already stored (or repeated in the batch) starts
        nothing (``existing``); for an exclusive flow, a contact with an open run of
        the flow (or given one earlier in the batch) starts nothing and is recorded
        (``run.trigger_skipped``, dedupe key ``skipped:<key>``); otherwise the
        request's contact is written when ``starts.contacts`` holds it (see
        ``BulkStart``), then the run and its START row (carrying the ``run.started``
        data). All or nothing: an unknown contact raises ``NotFound`` and writes
        nothing; ``contacts`` whose count or ids differ from the requests' raise
        ``ValueError``. Processes starting the same keys at the same time start each
        key once.
        """

    # -- what comes in (webhooks, POST /v1/events); durable before the caller answers 2xx
    async def ingest_status_reports(
        self,
        reports: Sequence[StatusReport],
        now: datetime,
        *,
        run_ignores: RunIgnores | None = None,
    ) -> list[IngestOutcome]:
        """Queue each report as STATUS due work for its message, or keep it pending.

        ``run_ignores``: a backend may offer it each matched report whose status can
        advance the message's. None means queue it. Events (the run's record that
        it ignores the report) mean apply it now: in the same transaction the
        message's status moves as the dispatcher would move it, the events are
        written after the report's own, nothing is queued, and the outcome is
        ``applied``. Every non-None answer of a call that returns is an
        ``applied`` outcome, in order. It runs inside the write, so it must be
        quick and must not touch the store. A backend may never call it
        (PostgreSQL queues every report).

        A report with neither ``provider_message_id`` nor ``idempotency_key`` raises
        ``ValueError`` (nothing of the batch is written).
        """

    async def ingest_contact_events(
        self, events: Sequence[ContactEvent], now: datetime
    ) -> list[IngestOutcome]:
        """Record contact facts and queue INBOUND due work for each open run.

        Facts: reply/button/choice set ``last_inbound_at`` and ``last_interaction_at``
        (never moved back); interaction sets ``last_interaction_at``;
        attendance_started/ended set/clear the attendance; opt_out/opt_in set/clear
        ``opted_out_at``. Each event is appended to the log (dropped as ``duplicate``
        when its dedupe key was seen). An event without ``contact_id`` raises
        ``ValueError`` (nothing written; the engine resolves phones first); an unknown
        contact id is ``unknown_contact``.
        """

    # -- triggers (cron, re-engagement sweeps)
    async def schedule_triggers(self, wanted: Mapping[str, NewDueWork], now: datetime) -> list[str]:
        """Make the keyed due-work rows exactly ``wanted`` (key -> row); return the keys added.

        A key already stored keeps its row untouched (due time, payload, lease: they
        carry the trigger's state across restarts); a key not stored is inserted as
        given; every stored row that has a key not in ``wanted`` is deleted, leased or
        not (its holder's completion then raises ``StaleFence``). Rows without a key
        are never touched. One atomic write; processes calling this at the same time
        never store a key twice (the loser's insert of that key is skipped).
        """

    async def page_contacts(self, *, after: str | None, limit: int) -> list[Contact]:
        """Up to ``limit`` contacts in id order (byte order of the UTF-8 id), with ids
        greater than ``after`` (from the first contact when None)."""

    async def window_page(
        self,
        field: ContactTimestamp,
        *,
        above: datetime | None,
        up_to: datetime | None,
        cursor: tuple[datetime, str] | None = None,
        limit: int,
        profile: bool = False,
    ) -> list[tuple[Contact, datetime]]:
        """(contact, its ``field``) for the contacts whose ``field`` lies in ``(above,
        up_to]``, ordered by (``field``, id): what a re-engagement sweep reads.

        ``None`` leaves that bound open; contacts whose ``field`` is not set are never
        returned. ``cursor`` (the (timestamp, id) of the last pair of the previous page)
        returns only contacts after it in that order. At most ``limit``. Served by an
        index on (``field``, id): cost follows the matches, not the contacts. Only what
        the sweep reads is decoded: the contact carries its id alone, or with
        ``profile`` also what an expression reads (phone, email, name, tags, context,
        timezone); its timestamps and attendance are left unset."""

    # -- retention
    async def purge(self, before: datetime, *, limit: int) -> Purged:
        """Delete, in one transaction, what finished before ``before``, oldest first:

        - up to ``limit`` runs that ended (completed, failed, cancelled) and last
          changed before ``before``, with their messages and events. A run with due
          work still naming it or one of its messages (a late status report not yet
          applied) is kept until that work is done;
        - up to ``limit`` events of no run (inbound replies, opt-outs, attendance)
          dated before ``before``; the contacts keep the facts those events set;
        - up to ``limit`` status reports kept pending since before ``before`` (their
          provider id was never recorded);
        - up to ``limit`` cron firings whose fire time is before ``before``.

        Contacts, open runs and due work are never deleted. A purged run's
        idempotency key is free again: the same key starts a new run.
        ``ValueError`` for a limit below 1.
        """

    async def count_purgeable(self, before: datetime) -> Purged:
        """What ``purge`` calls with ``before`` would delete now, all batches together
        (``more`` False); deletes nothing. It reads every such row: a one-off check."""

    # -- what an operator reads
    async def overview(self, now: datetime) -> Overview:
        """Due work by kind (due now and free, leased, due later; the oldest free
        due time), open runs by flow, and the number of ambiguous messages."""

    # -- erasure
    async def erase_contact(
        self, contact_id: str, *, keep_opt_out: bool, now: datetime
    ) -> Erased | None:
        """Delete contact ``contact_id`` and everything kept about them, in one
        transaction: every run (open or finished), its messages and events, the
        contact's own events, the due work of those runs and messages, and the status
        reports kept for those messages' keys. None (nothing written) when there is
        no such contact.

        With ``keep_opt_out``, a contact that opted out keeps a bare row: its id and
        opt-out facts, everything else cleared (``updated_at`` = ``now``), so the
        opt-out still holds when the id comes back. A worker holding due work of the
        contact then fails its fence (``StaleFence``) and writes nothing.
        """

    # -- state providers share: one per database, whatever the number of processes
    async def take_rate_slot(
        self, budget: str, *, limit: int, window: timedelta, now: datetime
    ) -> RateSlot:
        """Take one slot of the sliding-window budget ``budget`` at ``now``, or none.

        Taken when fewer than the limit in force (``limit``, or a smaller vendor
        limit stored by ``restrict_rate_budget``) were taken in ``(now - window,
        now]`` and no pause holds; otherwise nothing is taken and ``free_at`` says
        when the next slot frees. Durable before it returns. ``ValueError`` for an
        empty name, a limit below 1 or a window of zero.
        """

    async def restrict_rate_budget(
        self,
        budget: str,
        *,
        now: datetime,
        paused_until: datetime | None = None,
        vendor_limit: int | None = None,
    ) -> None:
        """Pause ``budget`` until ``paused_until`` (a later stored pause is kept) and/or
        store the limit the vendor reports (its latest word replaces the stored one)."""

    async def get_provider_credential(self, name: str) -> ProviderCredential | None:
        """The stored value of credential ``name`` and its version; None before the first."""

    async def claim_credential_renewal(
        self, name: str, *, stale_version: int, owner: str, now: datetime, lease: timedelta
    ) -> CredentialRenewal:
        """Ask to renew ``name``, whose version ``stale_version`` (0: none) was refused.

        ``current`` when a newer value is stored; ``busy_until`` when another owner
        holds an unexpired claim; else the claim is ``owner``'s until ``now + lease``
        (``claimed``), durably: the caller renews, then ``store_renewed_credential``
        or ``release_credential_renewal``.
        """

    async def store_renewed_credential(
        self, name: str, *, value: str, replaces_version: int, owner: str, now: datetime
    ) -> ProviderCredential | None:
        """Compare-and-set: store ``value`` as version ``replaces_version + 1`` if the
        stored version is still ``replaces_version`` (0: none stored), ending any claim;
        None (nothing written) when another value was stored first."""

    async def release_credential_renewal(self, name: str, *, owner: str) -> None:
        """End ``owner``'s claim on ``name`` without a new value (its renewal failed)."""
