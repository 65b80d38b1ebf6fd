"""`disparo simulate`: a dry run of one flow for one contact on a virtual clock.

It runs the real engine (runner, rules, rendering, the provider's request builder)
against an in-memory store; providers are replaced by a recorder that answers
`sent` and records the exact body the real provider would have received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.clock import VirtualClock
from engine.errors import EXIT_INPUT, EXIT_USAGE, UsageError, UserInputError
from engine.models import (
    OPEN_RUN_STATUSES,
    ContactEvent,
    ContactEventType,
    MessageStatus,
    NewEvent,
    OutboundMessage,
    SendResult,
    StatusReport,
)
from engine.runtime import Engine
from engine.scope import contact_timezone
from engine.settings import Settings
from engine.simulate_flow import simulated_flow
from engine.simulate_inputs import load_contact, load_events, parse_time
from engine.wording import counted, local_time
from providers.base import Capabilities, ParsedWebhook, Provider
from storage.base import Commit

_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class RecordingProvider:
    """Stands in for a configured provider: same capabilities and request body, no I/O."""

    def __init__(self, real: Provider, engine: Engine) -> None:
        self.name = real.name
        self.capabilities: Capabilities = real.capabilities
        self.config = getattr(real, "config", None)
        self._real, self._engine, self._count = real, engine, 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._real.close()  # the engine closes what it holds: this wrapper

    def build_request(self, message: OutboundMessage) -> Mapping[str, Any]:
        return self._real.build_request(message)

    async def send(self, message: OutboundMessage) -> SendResult:
        self._count += 1
        payload = self._real.build_request(message)
        await self._engine.store.commit(
            Commit(
                now=self._engine.clock.now(),
                events=[
                    NewEvent(
                        kind="simulate.send",
                        at=self._engine.clock.now(),
                        run_id=message.run_id,
                        message_id=message.message_id,
                        contact_id=message.contact.id,
                        data={
                            "step": message.step,
                            "provider": self.name,
                            "channel": message.channel,
                            "payload": dict(payload),
                        },
                    )
                ],
            )
        )
        return SendResult(provider_message_id=f"sim-{self._count}", status=MessageStatus.SENT)

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> ParsedWebhook:
        return self._real.parse_webhook(body, headers, received_at)


# The contact file's timestamps, and the event that sets each one.
_STAMP_EVENTS: dict[str, ContactEventType] = {
    "last_inbound_at": "reply",
    "last_interaction_at": "interaction",
    "opted_out_at": "opt_out",
}


def _facts_before(
    start: datetime, stamps: dict[str, datetime], attendance: ContactEvent | None, path: str
) -> None:
    """The contact file tells the past: a timestamp after the start would open a window
    or defer a send for a reply that has not happened (the API refuses such times)."""
    later = {name: at for name, at in stamps.items() if at > start}
    if attendance is not None and attendance.at > start:
        later["attendance.since"] = attendance.at
    if later:
        name, at = min(later.items(), key=lambda item: item[1])
        raise UserInputError(
            f"{path}: {name} ({at.isoformat()}) is after the simulation starts "
            f"({start.isoformat()}); the contact file tells what happened before: "
            "move it earlier, or start later with --at"
        )


async def _seed_facts(
    engine: Engine,
    contact_id: str,
    stamps: dict[str, datetime],
    attendance: ContactEvent | None,
) -> None:
    """Write the contact file's timestamps as the events that would have produced them."""
    facts = [
        ContactEvent(type=kind, at=stamps[stamp], contact_id=contact_id, source="simulate")
        for stamp, kind in _STAMP_EVENTS.items()
        if stamp in stamps
    ]
    if attendance is not None:
        facts.append(replace(attendance, contact_id=contact_id))
    if facts:
        await engine.store.ingest_contact_events(facts, engine.clock.now())
    if "last_outbound_at" in stamps:
        from storage.base import ContactChange

        await engine.store.commit(
            Commit(
                now=engine.clock.now(),
                contact=ContactChange(
                    contact_id=contact_id, last_outbound_at=stamps["last_outbound_at"]
                ),
            )
        )


def _line(event: Any, message_steps: Mapping[str, str]) -> dict[str, Any] | None:
    data = dict(event.data)
    base = {"at": event.at.isoformat()}
    if event.kind == "run.step":
        return {**base, "kind": "enter", "step": data["step"]}
    if event.kind == "decision":
        out = {
            **base,
            "kind": "decision",
            "step": data.get("step"),
            "rule": data.get("rule"),
            "outcome": data.get("outcome"),
            "reason": data.get("reason"),
            "facts": data.get("facts", {}),
        }
        if data.get("until"):
            out["until"] = data["until"]
        return out
    if event.kind == "simulate.send":
        return {
            **base,
            "kind": "send",
            "step": data["step"],
            "provider": data["provider"],
            "channel": data["channel"],
            "payload": data["payload"],
        }
    if event.kind.startswith(("inbound.", "status.")):
        line = {
            **base,
            "kind": "event",
            "type": event.kind.split(".", 1)[1],
            **{k: v for k, v in data.items() if k in ("text", "button_id", "attachment", "status")},
        }
        if event.kind.startswith("status.") and event.message_id in message_steps:
            line["message_step"] = message_steps[event.message_id]  # which message it is
        return line
    if event.kind == "timer":
        return {**base, "kind": "timer", "step": data.get("step"), "reason": data.get("reason")}
    if event.kind == "run.event_ignored":
        return {**base, "kind": "ignored", "reason": data.get("reason")}
    if event.kind == "message.skipped":  # its run had left the step (engine.left_step)
        return {**base, "kind": "skipped", "step": data.get("step"), "reason": data.get("reason")}
    if event.kind == "message.failed":
        return {**base, "kind": "failed", "step": data.get("step"), "reason": data.get("error")}
    if event.kind == "run.finished":
        return {**base, "kind": "end", "status": data.get("status"), "reason": data.get("reason")}
    return None


def _with_steps(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every line names the step the run was at (an event, the end), as INTERFACES
    promises: ``{"at", "kind", "step", ...}``."""
    step = None
    out = []
    for line in lines:
        step = line.get("step", step)
        out.append({"at": line["at"], "kind": line["kind"], "step": step, **line})
    return out


def _flag_time(value: str, flag: str) -> datetime:
    """A time given on the command line: one it cannot read is a usage error (exit 2),
    like a --until before the start, not a problem of the contact or events files."""
    try:
        return parse_time(value, flag)
    except UserInputError as exc:
        raise UsageError(str(exc)) from None


async def run_simulation(settings: Settings, args: argparse.Namespace) -> int:
    contact, stamps, contact_now, attendance = load_contact(args.contact)
    events = load_events(args.events, contact) if args.events else []
    start = (
        _flag_time(args.at, "--at")
        if args.at
        else (contact_now or datetime.now(UTC).replace(microsecond=0))
    )
    until_flag = _flag_time(args.until, "--until") if args.until else None
    for flag, value in (("--at", start), ("--until", until_flag)):
        if value and value >= _LATEST:
            # Timers and rules add up to 100 years to it: the calendar ends at 9999.
            print(f"{flag} ({value.isoformat()}) must be before the year 9000", file=sys.stderr)
            return EXIT_USAGE
    until = until_flag or start + timedelta(days=7)
    if until < start:
        print(
            f"--until ({until.isoformat()}) is before the simulation starts "
            f"({start.isoformat()}); give a later --until",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _facts_before(start, stamps, attendance, args.contact)
    # Events dated before --at happened before the run began: injected first, as the
    # engine would have stored them (an attendance, a reply that opened the window).
    early = [event for event in events if event["at"] < start]
    times = [*stamps.values(), *([attendance.at] if attendance else []), *(e["at"] for e in early)]
    clock = VirtualClock(min([start, *times]))
    with tempfile.TemporaryDirectory(prefix="disparo-simulate-") as scratch:
        # The flow's file alone: another file mid-edit does not stop the simulation.
        one_flow, flow_name = await asyncio.to_thread(
            simulated_flow, settings, args.flow, Path(scratch)
        )
        sim_settings = one_flow.model_copy(update={"storage": "sqlite:///:memory:"})
        async with Engine(sim_settings, clock=clock, run_loop=False, triggers=False) as engine:
            for name, real in list(engine.providers.items()):
                engine.providers[name] = RecordingProvider(real, engine)  # type: ignore[assignment]
            stored = await engine.upsert_contact(contact)
            zone = contact_timezone(
                stored, engine.catalog.latest(flow_name).flow, settings.timezone
            )
            await _seed_facts(engine, stored.id, stamps, attendance)
            seeded = await engine.store.list_events(contact_id=stored.id, limit=1)
            seeded_up_to = seeded[0].id if seeded else 0  # the contact file's own facts
            for event in early:
                await engine.run_until(event["at"])
                await _inject(engine, "", stored.id, event)
                await engine.settle()
            clock.set(start)
            run, _ = await engine.start_run(flow_name, contact, trigger="simulate")
            await engine.settle()
            for event in events[len(early) :]:
                if event["at"] > until:
                    break
                await engine.run_until(event["at"])
                await _inject(engine, run.id, stored.id, event)
                await engine.settle()
            await engine.run_until(until)
            final = await engine.get_run(run.id)
            steps = engine.catalog.latest(flow_name).flow.steps
            message_steps = {m.id: m.step for m in await engine.store.list_run_messages(run.id)}
            log = await engine.store.list_events(run_id=run.id, limit=100000)
            contact_log = await engine.store.list_events(contact_id=stored.id, limit=100000)
    seen = {e.id for e in log}
    ordered = sorted(
        [
            *log,
            *[
                e
                for e in contact_log
                if e.id not in seen and e.kind.startswith("inbound.") and e.id > seeded_up_to
            ],
        ],
        key=lambda e: e.id,
    )
    lines = _with_steps([line for e in ordered if (line := _line(e, message_steps)) is not None])
    if not args.json:
        print(f"# times in {zone.key}, the run's time zone (the contact's, else the flow's)")
    for line in lines:
        if args.json:
            print(json.dumps(line, ensure_ascii=False, default=str))
        else:
            print(_human(line, zone))
    if not args.json and final.status in OPEN_RUN_STATUSES:
        print(
            f"# the run is still {final.status} at step `{final.step}` at "
            f"{local_time(until, zone)}, where the simulation stops (--until)"
        )
    left_out = sum(event["at"] > until for event in events)
    if left_out:
        # Not a problem of the files: the window asked for ends before them.
        one = left_out == 1
        print(
            f"{counted(left_out, 'event')} of {args.events} {'is' if one else 'are'} dated "
            f"after --until ({until.isoformat()}) and {'was' if one else 'were'} not "
            f"applied; give a later --until to see {'it' if one else 'them'}",
            file=sys.stderr,
        )
    failed = [line for line in lines if line["kind"] == "failed"]
    if failed:
        # What fails here fails in production too: a missing variable, a limit, a template.
        print(
            f"{counted(len(failed), 'message')} failed; the `failed` lines above say why",
            file=sys.stderr,
        )
        return EXIT_INPUT
    if final.status == "failed" and (final.step not in steps or steps[final.step].end is None):
        # Not an `end: failed` step: the run broke (a `when:` that cannot be decided).
        print("the run failed; the `end` line above says why", file=sys.stderr)
        return EXIT_INPUT
    return 0


async def _inject(engine: Engine, run_id: str, contact_id: str, event: dict[str, Any]) -> None:
    kind = event["type"]
    if kind == "status":
        messages = await engine.store.list_run_messages(run_id)
        step = event.get("step")  # the message of that step; else the last one sent
        if step is not None:
            messages = [m for m in messages if m.step == step]
        if not messages:
            of = f" of step `{step}`" if step is not None else ""
            print(
                f"{event['at'].isoformat()}: no message{of} to apply status "
                f"{event.get('status')} to",
                file=sys.stderr,
            )
            return
        last = max(messages, key=lambda m: m.created_at)
        outcomes = await engine.ingest_status_reports(
            [
                StatusReport(
                    provider=last.provider,
                    status=MessageStatus(event["status"]),
                    at=event["at"],
                    idempotency_key=last.idempotency_key,
                    dedupe_key=_dedupe_key(event),
                )
            ]
        )
        _say_duplicate(event, outcomes)
        return
    outcomes = await engine.ingest_contact_events(
        [
            ContactEvent(
                type=kind,
                at=event["at"],
                contact_id=contact_id,
                text=event.get("text"),
                button_id=event.get("button_id"),
                attendant=event.get("attendant"),
                until=parse_time(event["until"], "until") if event.get("until") else None,
                source="simulate",
                channel=event.get("channel"),
                attachment=event.get("attachment"),
                dedupe_key=_dedupe_key(event),
            )
        ]
    )
    _say_duplicate(event, outcomes)


def _dedupe_key(event: dict[str, Any]) -> str | None:
    """An event's ``id`` names it, as in ``POST /v1/events``: a redelivery is a duplicate."""
    return f"simulate:{event['id']}" if event.get("id") is not None else None


def _say_duplicate(event: dict[str, Any], outcomes: Sequence[str]) -> None:
    if "duplicate" in outcomes:
        print(
            f"{event['at'].isoformat()}: event {event['id']} was seen before: a duplicate "
            "changes nothing (`disparo serve` answers it `duplicate`)",
            file=sys.stderr,
        )


def _human(line: dict[str, Any], zone: ZoneInfo) -> str:
    at = local_time(line["at"], zone)
    kind = line["kind"]
    if kind == "enter":
        return f"{at}  enter     {line['step']}"
    if kind == "decision":
        extra = f" until {local_time(line['until'], zone)}" if line.get("until") else ""
        return f"{at}  decision  {line['rule']}: {line['outcome']} ({line['reason']}){extra}"
    if kind == "send":
        payload = json.dumps(line["payload"], ensure_ascii=False)
        return (
            f"{at}  send      {line['step']} via {line['provider']} ({line['channel']}): {payload}"
        )
    if kind == "event":
        shown = ("at", "kind", "type", "step")
        rest = " ".join(
            f"{k}={json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v}"
            for k, v in line.items()
            if k not in shown
        )
        return f"{at}  event     {line['type']} {rest}".rstrip()
    if kind == "timer":
        return f"{at}  timer     {line['step']} ({line['reason']})"
    if kind == "failed":
        return f"{at}  failed    {line['step']}: {line['reason']}"
    if kind == "skipped":
        return f"{at}  skipped   {line['step']}: {line['reason']}"
    if kind == "ignored":
        return f"{at}  ignored   {line['reason']}"
    return f"{at}  end       {line.get('status')}: {line.get('reason')}"
