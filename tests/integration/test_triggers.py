"""Cron campaigns, re-engagement sweeps and inbound keywords in a running engine on a
virtual clock: due work is what fires them, so `run_until` drives days in ms."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.clock import VirtualClock
from engine.models import ContactEvent, ContactUpsert, DueKind, Run, RunStatus
from engine.runtime import Engine
from engine.settings import Settings
from storage.base import Commit
from tests.integration.engine_kit import Harness, harness, settings_with_flows

SP = ZoneInfo("America/Sao_Paulo")
MONDAY_10H = datetime(2026, 11, 23, 10, tzinfo=SP).astimezone(UTC)


def sp(day: int, hour: int, minute: int = 0) -> datetime:
    """São Paulo wall time on 2026-11-<day>, as UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SP).astimezone(UTC)


SMS_STEP = """\
start: aviso
steps:
  aviso:
    send: {channel: sms, provider: sandbox_sms, text: "Oi, temos novidades."}
    next: fim
  fim: {end: completed}
"""

CAMPAIGN = (
    """\
flow: campanha
timezone: America/Sao_Paulo
concurrency: many
triggers:
  - cron: "0 9 * * 1-5"
    audience: "contact.context.plano | default('') == 'ouro'"
    misfire_grace: 10m
"""
    + SMS_STEP
)

# One at a time, and the run waits two days: contacts stay "in the flow".
LONG_CAMPAIGN = """\
flow: longa
triggers:
  - api: {}
  - cron: "0 9 * * *"
start: espera
steps:
  espera: {wait: 2d, next: fim}
  fim: {end: completed}
"""

REENGAGE = (
    """\
flow: volta
triggers:
  - after: 23h
    since: last_inbound
    unless: "contact.context.nao_reengajar | default(false)"
"""
    + SMS_STEP
)

DUE_DATE = (
    """\
flow: vencimento
triggers:
  - after: 1d
    since: context.vence_em
"""
    + SMS_STEP
)

KEYWORDS = """\
flow: promo
triggers:
  - event: reply
    keyword: [promoção, quero desconto]
start: oferta
steps:
  oferta:
    send: {channel: sms, provider: sandbox_sms, text: "Cupom: DESC10"}
    on: {reply: obrigado}
  obrigado: {end: completed}
"""

ORDERS = """\
flow: pedido
triggers:
  - event: reply
    regex: '^pedido\\s*\\d+$'
start: espera
steps:
  espera: {wait: 1h, next: fim}
  fim: {end: completed}
"""


def settings_with(tmp_path: Path, *flows: str, **triggers: Any) -> Settings:
    return settings_with_flows(tmp_path, *flows, triggers=triggers)


async def add_contacts(h: Harness, plans: dict[str, str | None]) -> None:
    for contact_id, plano in plans.items():
        context = {} if plano is None else {"plano": plano}
        await h.engine.upsert_contact(
            ContactUpsert(id=contact_id, phone="+5511999991234", context=context)
        )


async def open_runs_of(h: Harness, flow: str, contacts: list[str]) -> list[Run]:
    """The open runs of ``flow`` of ``contacts``, entered or not yet."""
    runs = [r for c in contacts for r in await h.engine.store.list_open_runs(c)]
    return [r for r in runs if r.flow == flow]


async def runs_of(h: Harness, flow: str) -> list[Run]:
    """Every run of ``flow`` that entered its first step, oldest first (found through
    their run.started events, written at entry)."""
    events = await h.engine.store.list_events(kind_prefix="run.started", limit=100_000)
    ids = [e.run_id for e in sorted(events, key=lambda e: e.id) if e.data.get("flow") == flow]
    return [await h.engine.get_run(i) for i in ids if i is not None]


async def kinds(h: Harness, prefix: str) -> list[dict[str, Any]]:
    events = await h.engine.store.list_events(kind_prefix=prefix, limit=100_000)
    return [{"kind": e.kind, "at": e.at, **e.data} for e in sorted(events, key=lambda e: e.id)]


# ------------------------------------------------------------------ cron


async def test_a_campaign_fires_once_per_fire_time_for_its_audience_only(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, CAMPAIGN, chunk_size=2)
    async with harness(settings, at=MONDAY_10H) as h:
        plans = {f"c-{n}": "ouro" if n % 3 else "prata" for n in range(1, 10)}
        await add_contacts(h, {**plans, "sem-plano": None})
        gold = sorted(c for c, p in plans.items() if p == "ouro")

        await h.engine.run_until(sp(24, 9, 1))
        first = await runs_of(h, "campanha")
        # Tuesday to Friday fire; Saturday and Sunday do not ("1-5" is Monday-Friday).
        await h.engine.run_until(sp(30, 8))
        everything = await runs_of(h, "campanha")
        fired = [e["fire_time"] for e in await kinds(h, "trigger.fired")]
        done = await kinds(h, "trigger.fanout_done")

    assert sorted(r.contact_id for r in first) == gold
    assert {r.created_at for r in first} == {sp(24, 9)}
    assert {r.idempotency_key for r in first} == {
        f"cron:campanha:0:2026-11-24T12:00:00+00:00:{c}" for c in gold
    }
    assert fired == [sp(day, 9).isoformat() for day in (24, 25, 26, 27)]
    assert len(everything) == 4 * len(gold)
    assert {r.contact_id for r in everything} == set(gold)
    assert [(e["matched"], e["started"]) for e in done] == [(len(gold), len(gold))] * 4


class Crash(Exception):
    """The process dies here."""


async def claim_one(engine: Engine) -> Any:
    (work,) = await engine.store.claim_due_work(
        owner=engine.owner, now=engine.clock.now(), lease_seconds=30, limit=1
    )
    return work


async def test_a_restart_in_the_middle_of_a_fan_out_starts_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_with(tmp_path, CAMPAIGN, chunk_size=3)
    plans = {f"c-{n:02d}": "ouro" if n % 4 else "prata" for n in range(1, 12)}
    gold = sorted(c for c, p in plans.items() if p == "ouro")
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, plans)
        clock = h.clock
        clock.set(sp(24, 9))
        engine = h.engine
        cron = await claim_one(engine)
        assert cron.kind == DueKind.CRON
        await engine.dispatcher.handle(cron)  # records the firing, adds the fan-out
        chunk = await claim_one(engine)
        await engine.dispatcher.handle(chunk)  # contacts 1-3
        real_commit = engine.store.commit

        async def dies_before_the_cursor_moves(commit: Commit) -> Any:
            if commit.done is not None and commit.done.work.kind == DueKind.FANOUT:
                raise Crash
            return await real_commit(commit)

        monkeypatch.setattr(engine.store, "commit", dies_before_the_cursor_moves)
        chunk = await claim_one(engine)
        with pytest.raises(Crash):
            await engine.dispatcher.handle(chunk)  # contacts 4-6 started, cursor not moved
        started_before = {r.contact_id for r in await open_runs_of(h, "campanha", gold)}
        monkeypatch.undo()

    clock.advance(31)  # the dead process's lease runs out
    async with Engine(settings, clock=clock, run_loop=False) as again:
        await again.run_until(clock.now() + timedelta(minutes=1))
        h2 = Harness(again, clock)
        runs = await runs_of(h2, "campanha")
        fired = await kinds(h2, "trigger.fired")

    assert started_before == {c for c in gold if c <= "c-06"}
    assert sorted(r.contact_id for r in runs) == gold  # one run each, none twice
    assert len(fired) == 1


async def test_a_firing_later_than_its_grace_is_skipped_and_recorded(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, CAMPAIGN)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": "ouro"})
        h.clock.set(sp(24, 11))  # asleep through Tuesday 09:00 and its 10 min of grace
        await h.engine.settle()
        skipped = await runs_of(h, "campanha")
        misfired = await kinds(h, "trigger.misfired")

        h.clock.set(sp(25, 9, 8))  # Wednesday: late, but within grace
        await h.engine.settle()
        runs = await runs_of(h, "campanha")

    assert skipped == []
    assert [(e["fire_time"], e["flow"]) for e in misfired] == [(sp(24, 9).isoformat(), "campanha")]
    assert "over the misfire grace of 600s" in misfired[0]["reason"]
    assert [(r.contact_id, r.created_at) for r in runs] == [("c-1", sp(25, 9, 8))]


async def test_a_contact_already_in_the_flow_is_recorded_and_the_fan_out_goes_on(
    tmp_path: Path,
) -> None:
    settings = settings_with(tmp_path, LONG_CAMPAIGN, chunk_size=2)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None, "c-2": None, "c-3": None})
        by_api = await h.start("longa", "c-2")

        await h.engine.run_until(sp(24, 9, 1))
        runs = await runs_of(h, "longa")
        skipped = await kinds(h, "run.trigger_skipped")
        await h.engine.run_until(sp(25, 9, 1))  # everyone is still waiting in the flow
        skipped_again = await kinds(h, "run.trigger_skipped")

    assert sorted(r.contact_id for r in runs) == ["c-1", "c-2", "c-3"]
    assert [r.id for r in runs if r.contact_id == "c-2"] == [by_api.id]
    assert [(e["trigger"], e["flow"], e["at"]) for e in skipped] == [("cron", "longa", sp(24, 9))]
    assert len(skipped_again) == 4
    assert all(r.status == RunStatus.WAITING for r in runs)


async def test_restarting_the_engine_keeps_one_row_per_trigger_and_its_next_fire(
    tmp_path: Path,
) -> None:
    settings = settings_with(tmp_path, CAMPAIGN, REENGAGE)
    async with harness(settings, at=MONDAY_10H) as h:
        await h.engine.settle()
    clock = VirtualClock(MONDAY_10H + timedelta(hours=1))
    for _ in range(2):
        async with Engine(settings, clock=clock, run_loop=False):
            clock.advance(3600)
    async with Engine(settings, clock=clock, run_loop=False) as engine:
        claimed = await engine.store.claim_due_work(
            owner="peek", now=sp(30, 0), lease_seconds=1, limit=100
        )

    assert sorted(str(w.kind) for w in claimed) == ["cron", "sweep"]
    (cron,) = [w for w in claimed if w.kind == DueKind.CRON]
    assert cron.due_at == sp(24, 9)


# ------------------------------------------------------------------ re-engagement


async def reply(h: Harness, contact_id: str, text: str = "oi") -> None:
    await h.event("reply", contact=contact_id, text=text)


@asynccontextmanager
async def reengaging(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = settings_with(tmp_path, REENGAGE)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None, "c-2": None, "vip": None})
        await h.engine.set_context("vip", {"nao_reengajar": True})
        yield h


async def test_re_engagement_starts_one_run_23h_after_the_last_inbound(tmp_path: Path) -> None:
    async with reengaging(tmp_path) as h:
        await reply(h, "c-1")
        await h.advance(timedelta(hours=1))
        await reply(h, "c-2")
        await reply(h, "vip")

        await h.engine.run_until(MONDAY_10H + timedelta(hours=23) - timedelta(seconds=1))
        too_early = await runs_of(h, "volta")
        await h.engine.run_until(MONDAY_10H + timedelta(days=3))
        runs = await runs_of(h, "volta")

    assert too_early == []
    assert [(r.contact_id, r.created_at) for r in runs] == [
        ("c-1", MONDAY_10H + timedelta(hours=23)),
        ("c-2", MONDAY_10H + timedelta(hours=24)),
    ]
    assert runs[0].idempotency_key == f"after:volta:0:c-1:{MONDAY_10H.isoformat()}"
    assert all(r.status == RunStatus.COMPLETED for r in runs)


async def test_a_new_inbound_starts_a_new_episode(tmp_path: Path) -> None:
    async with reengaging(tmp_path) as h:
        await reply(h, "c-1")
        await h.advance(timedelta(hours=30))
        await reply(h, "c-1", "voltei")
        await h.advance(timedelta(hours=22))
        one = await runs_of(h, "volta")
        await h.advance(timedelta(days=2))
        two = await runs_of(h, "volta")

    assert len(one) == 1
    assert [r.created_at for r in two] == [
        MONDAY_10H + timedelta(hours=23),
        MONDAY_10H + timedelta(hours=30 + 23),
    ]


async def test_unless_excludes_a_contact_from_re_engagement(tmp_path: Path) -> None:
    async with reengaging(tmp_path) as h:
        await reply(h, "vip")
        await reply(h, "c-1")
        await h.advance(timedelta(days=2))
        runs = await runs_of(h, "volta")
        swept = await kinds(h, "trigger.swept")

    assert [r.contact_id for r in runs] == ["c-1"]
    assert [(e["matched"], e["started"], e["excluded"]) for e in swept] == [(2, 1, 1)]


async def test_a_context_timestamp_re_engages_a_day_after_it(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, DUE_DATE, sweep_interval=600)
    async with harness(settings, at=MONDAY_10H) as h:
        await h.engine.upsert_contact(
            ContactUpsert(id="c-1", context={"vence_em": "2026-11-24T08:00:00-03:00"})
        )
        await h.engine.upsert_contact(ContactUpsert(id="c-2", context={"vence_em": "amanhã"}))
        await h.engine.run_until(sp(25, 7, 59))
        early = await runs_of(h, "vencimento")
        await h.engine.run_until(sp(26, 9))
        runs = await runs_of(h, "vencimento")

    assert early == []
    # Swept every 10 min: started by the first sweep at or after 25/11 08:00.
    assert [r.contact_id for r in runs] == ["c-1"]
    assert sp(25, 8) <= runs[0].created_at < sp(25, 8, 10)


# ------------------------------------------------------------------ inbound keywords


async def test_a_keyword_reply_starts_the_flow_and_is_not_its_first_answer(
    tmp_path: Path,
) -> None:
    settings = settings_with(tmp_path, KEYWORDS, ORDERS)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None, "c-2": None, "c-3": None})
        await reply(h, "c-1", "oi, tudo bem?")
        await reply(h, "c-1", "quero a promoção")
        nothing = await runs_of(h, "promo")
        await reply(h, "c-1", "  Promoção! ")
        await reply(h, "c-2", "pedido 123")
        await reply(h, "c-3", "meu pedido 123")

        (promo,) = await runs_of(h, "promo")
        (order,) = await runs_of(h, "pedido")

    assert nothing == []
    assert promo.contact_id == "c-1"
    assert promo.step == "oferta"  # the reply that started it did not answer the offer
    assert promo.status == RunStatus.WAITING
    assert order.contact_id == "c-2"


async def test_a_redelivered_reply_starts_the_flow_once(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, KEYWORDS)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None})
        event = ContactEvent(
            type="reply", at=h.clock.now(), contact_id="c-1", text="promoção", dedupe_key="w:1"
        )
        first = await h.engine.ingest_contact_events([event])
        again = await h.engine.ingest_contact_events([event])
        runs = await open_runs_of(h, "promo", ["c-1"])

    assert (first, again) == (["queued"], ["duplicate"])
    assert len(runs) == 1
    assert runs[0].idempotency_key == "event:promo:0:w:1"


async def test_a_keyword_from_a_contact_already_in_the_flow_is_recorded(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, KEYWORDS)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None})
        await reply(h, "c-1", "promoção")
        await h.advance(timedelta(seconds=5))
        # The run waits at the offer; asking again moves it and is also recorded.
        await h.engine.ingest_contact_events(
            [ContactEvent(type="reply", at=h.clock.now(), contact_id="c-1", text="promoção")]
        )
        await h.engine.settle()
        runs = await runs_of(h, "promo")
        skipped = await kinds(h, "run.trigger_skipped")

    assert len(runs) == 1
    assert runs[0].status == RunStatus.COMPLETED  # the second "promoção" answered the offer
    assert [(e["flow"], e["trigger"]) for e in skipped] == [("promo", "event")]


async def test_a_reload_takes_the_new_keywords(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, KEYWORDS)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None, "c-2": None})
        await reply(h, "c-1", "oi")  # the keyword triggers are read at the first reply
        (tmp_path / "flows" / "promo.yaml").write_text(
            KEYWORDS.replace("[promoção, quero desconto]", "[cupom]")
        )
        await h.engine.reload_flows()

        await reply(h, "c-1", "promoção")
        old_keyword = await runs_of(h, "promo")
        await reply(h, "c-2", "cupom")
        (promo,) = await runs_of(h, "promo")

    assert old_keyword == []
    assert promo.contact_id == "c-2"


async def test_unless_a_flag_the_contact_never_had_re_engages_it(tmp_path: Path) -> None:
    # FLOW_FORMAT's own example: a contact with no `pago` at all has not paid.
    flow = REENGAGE.replace(
        "contact.context.nao_reengajar | default(false)", "contact.context.pago"
    )
    async with harness(settings_with(tmp_path, flow), at=MONDAY_10H) as h:
        for contact_id, context in (
            ("c-1", {}),
            ("pagou", {"pago": True}),
            ("c-3", {"pago": False}),
        ):
            await h.engine.upsert_contact(
                ContactUpsert(id=contact_id, phone="+5511999991234", context=context)
            )
            await reply(h, contact_id)
        await h.advance(timedelta(days=2))
        runs = await runs_of(h, "volta")
        swept = await kinds(h, "trigger.swept")

    assert sorted(r.contact_id for r in runs) == ["c-1", "c-3"]
    assert [(e["matched"], e["started"], e["excluded"]) for e in swept] == [(3, 2, 1)]


async def test_a_campaign_that_left_contacts_out_on_errors_warns_with_the_first_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A CSV loads `valor` as text unless its header says `valor:number`: an audience
    # `valor > 1000` then fails for every contact, and the campaign reaches nobody.
    flow = CAMPAIGN.replace(
        "contact.context.plano | default('') == 'ouro'", "contact.context.valor > 1000"
    )
    async with harness(settings_with(tmp_path, flow, chunk_size=2), at=MONDAY_10H) as h:
        for contact_id, valor in (("c-1", "1670"), ("c-2", 1670), ("c-3", "10")):
            await h.engine.upsert_contact(
                ContactUpsert(id=contact_id, phone="+5511999991234", context={"valor": valor})
            )
        with caplog.at_level(logging.WARNING):
            await h.engine.run_until(sp(24, 9, 1))
        (done,) = await kinds(h, "trigger.fanout_done")

    assert (done["started"], done["errors"]) == (1, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"fan-out of campanha for {sp(24, 9).isoformat()} left 2 contacts out on errors; "
        "the first: contact c-1: campanha/triggers/audience: "
        "'>' not supported between instances of 'str' and 'int'"
    ]
