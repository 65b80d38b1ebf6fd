"""Retention in a running engine: what finished long ago goes, what a rule or an open
run still needs stays, and the purge runs by itself on the engine's clock."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import NotFound
from engine.models import ContactUpsert, MessageStatus, RunStatus
from engine.retention import FIRST_PURGE_AFTER
from tests.integration.engine_kit import harness, running_engine, settings_for, until

DAY = timedelta(days=1)

HEADER = """\
defaults:
  provider: sandbox_sms
  channel: sms
concurrency: many
start: aviso
steps:
"""
AVISO = (
    "flow: aviso\n"
    + HEADER
    + """\
  aviso:
    send: {text: "Sua fatura fechou."}
    next: fim
  fim: {end: completed}
"""
)
ESPERA = (
    "flow: espera\n"
    + HEADER
    + """\
  aviso:
    send: {text: "Responda quando puder."}
    next: espera
  espera:
    wait: {for: reply, up_to: 90d}
    on: {reply: fim, timeout: fim}
  fim: {end: completed}
"""
)


def flows_dir(tmp_path: Path, **extra: str) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "aviso.yaml").write_text(AVISO)
    (flows / "espera.yaml").write_text(ESPERA)
    for name, text in extra.items():
        (flows / f"{name}.yaml").write_text(text)
    return flows


async def test_a_run_finished_longer_ago_than_keep_is_deleted_and_an_open_one_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path, flows=flows_dir(tmp_path), retention={"keep": "30d"})
    async with harness(settings) as h:
        done = await h.start("aviso", "c-1")
        waiting = await h.start("espera", "c-2", phone="+5511999997777")
        await h.advance(timedelta(seconds=5))
        assert (await h.run(done.id)).status == RunStatus.COMPLETED
        [sms] = await h.messages(done.id)
        assert sms.status == MessageStatus.DELIVERED
        second = await h.start("aviso", "c-3", phone="+5511999996666")

        h.clock.set(h.clock.now() + 29 * DAY)
        assert (await h.engine.retention.purge_once()).total == 0  # type: ignore[union-attr]
        later = await h.start("aviso", "c-4", phone="+5511999995555")
        await h.advance(timedelta(seconds=5))

        h.clock.set(h.clock.now() + 2 * DAY)
        with caplog.at_level(logging.INFO, logger="disparo.retention"):
            tally = await h.engine.retention.purge_once()

        assert tally is not None
        assert tally.counts["runs"] == 2  # `done` and `second`, finished 31 days ago
        assert tally.counts["messages"] == 2
        for gone in (done, second):
            with pytest.raises(NotFound):
                await h.engine.get_run(gone.id)
        assert (await h.run(waiting.id)).status == RunStatus.WAITING
        assert len(await h.messages(waiting.id)) == 1
        assert (await h.run(later.id)).status == RunStatus.COMPLETED
        assert await h.engine.get_contact("c-1") is not None
        [line] = [r.getMessage() for r in caplog.records if r.name == "disparo.retention"]
        assert line.startswith("retention: deleted 2 finished runs, 2 messages, ")
        metrics = h.engine.metrics.render().decode()
        assert 'disparo_purged_total{kind="runs"} 2.0' in metrics


async def test_keep_is_stretched_to_the_longest_recent_contact_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cauteloso = AVISO.replace("flow: aviso", "flow: cauteloso").replace(
        "  channel: sms\n", "  channel: sms\n  rules: {recent_contact: 45d}\n"
    )
    flows = flows_dir(tmp_path, cauteloso=cauteloso)
    settings = settings_for(tmp_path, flows=flows, retention={"keep": "30d"})
    async with harness(settings) as h:
        done = await h.start("aviso")
        await h.advance(timedelta(seconds=5))
        h.clock.set(h.clock.now() + 40 * DAY)

        with caplog.at_level(logging.WARNING, logger="disparo.retention"):
            tally = await h.engine.retention.purge_once()
            await h.engine.retention.purge_once()

        assert tally is not None
        assert tally.counts["runs"] == 0
        assert (await h.run(done.id)).status == RunStatus.COMPLETED
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            "retention.keep is 30d but flow `cauteloso`, step `aviso`: rules.recent_contact "
            "reads 45d of messages: keeping 45d"
        ]
        h.clock.set(h.clock.now() + 6 * DAY)
        tally = await h.engine.retention.purge_once()
        assert tally is not None
        assert tally.counts["runs"] == 1


async def test_keep_null_deletes_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, flows=flows_dir(tmp_path), retention={"keep": None})
    async with harness(settings) as h:
        done = await h.start("aviso")
        await h.advance(timedelta(seconds=5))
        h.clock.set(h.clock.now() + 400 * DAY)

        assert await h.engine.retention.purge_once() is None
        assert (await h.run(done.id)).status == RunStatus.COMPLETED


async def test_a_serving_engine_purges_by_itself_every_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(
        tmp_path, flows=flows_dir(tmp_path), retention={"keep": "2d", "every": "1h", "batch": 1}
    )
    phones = ["+5511999991111", "+5511999992222", "+5511999993333"]
    caplog.set_level(logging.INFO, logger="disparo.retention")
    async with running_engine(settings) as (engine, clock):
        assert caplog.messages[0] == (
            "retention: what finished more than 2d ago is deleted every 1h "
            "(retention.keep; null keeps everything)"
        )
        runs = []
        for n, phone in enumerate(phones):
            run, _ = await engine.start_run("aviso", ContactUpsert(id=f"c-{n}", phone=phone))
            runs.append(run)
        registry = engine.metrics.registry
        done = {"flow": "aviso", "event": "completed"}
        await until(
            lambda: registry.get_sample_value("disparo_runs_total", done) == 3,
            "the three runs completed",
        )
        # The sandbox reports `delivered` 2 s after each send; until that report is
        # applied its run is not purged (due work names the message).
        clock.advance(timedelta(seconds=5))
        delivered = {"provider": "sandbox_sms", "status": "delivered"}
        await until(
            lambda: registry.get_sample_value("disparo_messages_total", delivered) == 3,
            "the three messages delivered",
        )

        clock.advance(FIRST_PURGE_AFTER)  # the first purge: nothing is 2 days old yet
        await until(lambda: engine.retention.completed == 1, "the first purge")
        assert None not in [await engine.store.get_run(r.id) for r in runs]

        clock.advance(2 * DAY)  # the next purge comes due: batches of one, until none is left
        await until(lambda: engine.retention.completed == 2, "the second purge")
        assert [await engine.store.get_run(r.id) for r in runs] == [None, None, None]
        metrics = engine.metrics.render().decode()
        assert 'disparo_purged_total{kind="runs"} 3.0' in metrics
