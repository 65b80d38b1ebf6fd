"""What starts runs besides ``POST /v1/runs``: cron campaigns, re-engagement sweeps and
inbound keywords (FLOW_FORMAT.md, "Triggers").

Every firing is due work, never an in-memory timer: a CRON row per `cron` trigger
(``engine.triggers_cron``) and a SWEEP row per `after` trigger
(``engine.triggers_sweep``), claimed with a lease and a fence like any other row, so
they survive restarts, run on one process at a time, and move with a
``VirtualClock`` in tests. `event` triggers start runs as replies are ingested
(``engine.triggers_inbound``).

``Triggers.schedule`` (run by ``Engine.__aenter__``) makes the store's trigger rows
match the loaded flows: each row has a key made of the flow, the trigger's index and
a digest of its definition, so a restart keeps the rows (and their next fire time,
watermark and cursor) as they are, an edited trigger gets a new row that carries
the old row's pending fire time or watermark (``engine.triggers_edits``), and a
removed one loses its row. With several engine processes the last one to start decides the
schedule; they are expected to serve the same flows.

A contact already in a one-at-a-time flow is recorded (``run.trigger_skipped``) and
skipped; the fan-out or sweep goes on with the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.clock import Clock
from engine.errors import Problem
from engine.flow.model import AfterTrigger, CronTrigger, EventTrigger, Flow, to_timedelta
from engine.flow.validate import FlowCheck, Locator
from engine.flows import FlowCatalog
from engine.metrics import Metrics
from engine.models import ContactEvent, DueKind, DueWork, NewDueWork
from engine.opt_out import is_opt_out
from engine.scheduler import CronSchedule, cron_problem
from engine.settings import Settings
from engine.triggers_cron import handle_cron, handle_fanout, iso
from engine.triggers_edits import carry_over, log_unscheduled, unscheduled
from engine.triggers_inbound import (
    InboundTrigger,
    inbound_triggers,
    nested_repeat,
    start_from_replies,
)
from engine.triggers_start import TriggerContext
from engine.triggers_sweep import handle_sweep
from storage.base import Commit, IngestOutcome, Store

log = logging.getLogger("disparo.triggers")

TRIGGER_KINDS = frozenset({DueKind.CRON, DueKind.FANOUT, DueKind.SWEEP})


class Triggers:
    """The triggers of one engine: schedules their rows, handles them when due."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        catalog: FlowCatalog,
        settings: Settings,
        metrics: Metrics,
        notify: Callable[[], None],
    ) -> None:
        self.ctx = TriggerContext(
            store=store,
            clock=clock,
            catalog=catalog,
            settings=settings.triggers,
            default_timezone=settings.timezone,
            metrics=metrics,
            notify=notify,
        )
        self.opt_out_keywords = settings.opt_out_keywords
        self._inbound: list[InboundTrigger] | None = None

    async def schedule(self) -> list[str]:
        """Make the stored CRON and SWEEP rows match the loaded flows; return new keys.
        The keyword triggers are read again from the loaded flows at the next reply."""
        self._inbound = None
        flows = [loaded.flow for loaded in self.ctx.catalog.current.values()]
        now = self.ctx.clock.now()
        wanted = trigger_rows(
            flows,
            now=now,
            default_timezone=self.ctx.default_timezone,
            misfire_grace=self.ctx.settings.misfire_grace,
        )
        stored = await self.ctx.store.stored_triggers()
        dropped = unscheduled(stored, wanted, {flow.flow for flow in flows})
        wanted, events = await carry_over(self.ctx.store, wanted, now, stored)
        added = await self.ctx.store.schedule_triggers(wanted, now)
        if added:
            log.info("scheduled triggers: %s", ", ".join(sorted(added)))
        log_unscheduled(dropped)
        # Recorded by the process whose row was stored, once.
        recorded = [event for key, event in events.items() if key in added]
        if recorded:
            await self.ctx.store.commit(Commit(now=now, events=recorded))
        return added

    async def handle(self, work: DueWork) -> None:
        """Handle a CRON, FANOUT or SWEEP row the dispatcher claimed."""
        if work.kind == DueKind.CRON:
            await handle_cron(self.ctx, work)
        elif work.kind == DueKind.FANOUT:
            await handle_fanout(self.ctx, work)
        elif work.kind == DueKind.SWEEP:
            await handle_sweep(self.ctx, work)
        else:
            raise ValueError(f"due work {work.id} of kind {work.kind} is not a trigger")

    async def on_contact_events(
        self, events: Sequence[ContactEvent], outcomes: Sequence[IngestOutcome]
    ) -> int:
        """Start the flows that stored replies trigger (before the caller answers 2xx)."""
        if self._inbound is None:
            flows = [loaded.flow for loaded in self.ctx.catalog.current.values()]
            self._inbound = inbound_triggers(flows)
        if not self._inbound:
            return 0
        return await start_from_replies(
            self.ctx, self._inbound, events, outcomes, self.opt_out_keywords
        )


def _digest(definition: Mapping[str, Any]) -> str:
    text = json.dumps(definition, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def flow_timezone(flow: Flow, default: str) -> str:
    """The time zone cron expressions of ``flow`` are read in."""
    rules = flow.defaults.rules
    return flow.timezone or (rules.timezone if rules else None) or default


def trigger_rows(
    flows: Iterable[Flow], *, now: datetime, default_timezone: str, misfire_grace: float
) -> dict[str, NewDueWork]:
    """The CRON and SWEEP rows the flows need, by key (``Store.schedule_triggers``).

    A CRON row is due at the next fire time after ``now``; a SWEEP row is due now,
    with its watermark at ``now - after``: contacts whose timestamp comes due from
    the moment the trigger exists are re-engaged, older ones are not.
    """
    rows: dict[str, NewDueWork] = {}
    for flow in flows:
        zone = flow_timezone(flow, default_timezone)
        for index, trigger in enumerate(flow.triggers):
            if isinstance(trigger, CronTrigger):
                grace = trigger.misfire_grace
                definition: dict[str, Any] = {
                    "flow": flow.flow,
                    "trigger": index,
                    "cron": trigger.cron,
                    "timezone": zone,
                    "audience": trigger.audience,
                    "misfire_grace": (
                        to_timedelta(grace).total_seconds() if grace is not None else misfire_grace
                    ),
                }
                fire = CronSchedule(trigger.cron, zone).next_after(now)
                if fire is None:
                    continue
                key = f"cron:{flow.flow}:{index}:{_digest(definition)}"
                rows[key] = NewDueWork(
                    kind=DueKind.CRON, due_at=fire, payload={**definition, "fire_time": iso(fire)}
                )
            elif isinstance(trigger, AfterTrigger):
                after = to_timedelta(trigger.after)
                definition = {
                    "flow": flow.flow,
                    "trigger": index,
                    "since": trigger.since,
                    "after": after.total_seconds(),
                    "unless": trigger.unless,
                }
                key = f"after:{flow.flow}:{index}:{_digest(definition)}"
                rows[key] = NewDueWork(
                    kind=DueKind.SWEEP,
                    due_at=now,
                    payload={**definition, "watermark": iso(now - after), "cutoff": None},
                )
    return rows


_NESTED_REPEAT = (
    "`regex` has a repeat inside a repeat (like `(a+)+`): a reply crafted not to match "
    "makes it run for minutes, stalling every webhook; repeat the inner part once, or "
    "make it possessive (`(?:a+)++`) or atomic (`(?>a+)+`)"
)


def trigger_problems(flow: Flow, at: Locator) -> Iterable[Problem]:
    """`disparo check` for triggers: cron values, `event` keywords and regexes."""
    for index, trigger in enumerate(flow.triggers):
        where = ("triggers", index)
        if isinstance(trigger, CronTrigger) and len(trigger.cron.split()) == 5:
            why = cron_problem(trigger.cron)
            if why is not None:
                yield at.problem((*where, "cron"), f"`cron` of trigger {index + 1}: {why}")
        elif isinstance(trigger, EventTrigger):
            words = [trigger.keyword] if isinstance(trigger.keyword, str) else trigger.keyword
            if not words and trigger.regex is None:
                yield at.problem(
                    (*where, "event"),
                    f"trigger {index + 1} needs `keyword:` or `regex:` to know which "
                    "replies start the flow",
                )
            for position, word in enumerate(words or []):
                if not word.strip(" .!?,;"):
                    listed = not isinstance(trigger.keyword, str)
                    path = (*where, "keyword", position) if listed else (*where, "keyword")
                    yield at.problem(path, "an empty keyword matches no reply; remove it")
            if trigger.regex is not None:
                yield from _regex_problems(trigger.regex, (*where, "regex"), at)


def _regex_problems(regex: str, where: tuple[str | int, ...], at: Locator) -> Iterable[Problem]:
    try:
        re.compile(regex)
        nested = nested_repeat(regex)
    except re.error as exc:
        yield at.problem(where, f"`regex` does not compile: {exc}; check the pattern")
    except RecursionError:  # Python's parser of regexes recurses per group
        yield at.problem(where, "`regex` is nested too deeply to compile; nest fewer groups")
    else:
        if nested:
            yield at.problem(where, _NESTED_REPEAT)


def opt_out_keyword_triggers(opt_out_keywords: Sequence[str]) -> FlowCheck:
    """`disparo check`: an `event` keyword that is an opt-out keyword starts a flow for a
    contact the same reply opts out, so it could never send."""

    def check(flow: Flow, at: Locator) -> Iterable[Problem]:
        for index, trigger in enumerate(flow.triggers):
            if not isinstance(trigger, EventTrigger) or trigger.keyword is None:
                continue
            listed = not isinstance(trigger.keyword, str)
            words = [trigger.keyword] if isinstance(trigger.keyword, str) else trigger.keyword
            for position, word in enumerate(words):
                if is_opt_out(word, opt_out_keywords):
                    where = ("triggers", index, "keyword", *((position,) if listed else ()))
                    yield at.problem(
                        where,
                        f"keyword `{word}` is an opt-out keyword (opt_out_keywords: "
                        f"{', '.join(opt_out_keywords)}): the reply opts the contact out, and "
                        "the flow it starts could never send; remove it",
                    )

    return check


__all__ = [
    "TRIGGER_KINDS",
    "Triggers",
    "flow_timezone",
    "opt_out_keyword_triggers",
    "trigger_problems",
    "trigger_rows",
]
