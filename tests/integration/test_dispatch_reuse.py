"""The dispatch path reuses what it already read: these tests pin down that the
shortcuts never lose a concurrent change (the run moving while the provider call
is in flight) and that the store's combined statements keep their guarantees."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.models import MessageStatus, OutboundMessage, RunStatus
from providers.base import SendResult
from storage.base import Commit, RunChange
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import harness
from tests.integration.test_provider_faults import make_settings

# The `http` provider to the fake gateway sends no status callbacks, so nothing
# but the dispatcher's own `sent` transition can move the run on (no `on:`, so
# `sent` moves the step to `next`).
FLOW = """\
flow: aviso
defaults: {provider: gateway, rules: {window: ignore}}
start: aviso
steps:
  aviso:
    send: {text: "Olá {{ contact.first_name }}, seu pedido saiu para entrega."}
    next: fim
  fim: {end: completed}
"""


def settings(tmp_path: Path, gateway: FakeGateway) -> Any:
    made = make_settings(tmp_path, gateway)
    (tmp_path / "flows" / "aviso.yaml").write_text(FLOW)
    return made


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value="Bearer gw-test-token-0123456789") as gw:
        yield gw


async def test_a_run_changed_during_the_provider_call_still_completes_with_that_change(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    async with harness(settings(tmp_path, gateway)) as h:
        engine = h.engine
        sandbox = engine.providers["gateway"]
        real_send = sandbox.send
        bumped: list[int] = []

        async def send_while_the_run_moves(message: OutboundMessage) -> SendResult:
            # Another writer changes the run after the dispatcher read it.
            run = await engine.store.get_run(message.run_id)
            assert run is not None
            await engine.store.commit(
                Commit(
                    now=h.clock.now(),
                    run=RunChange(
                        run_id=run.id,
                        expected_version=run.version,
                        step=run.step,
                        status=run.status,
                        step_seq=run.step_seq,
                        vars={**run.vars, "marcado": "sim"},
                    ),
                )
            )
            bumped.append(run.version + 1)
            return await real_send(message)

        sandbox.send = send_while_the_run_moves  # type: ignore[method-assign]
        run = await h.start("aviso")

        done = await h.run(run.id)
        assert bumped, "the provider was never called"
        assert done.status == RunStatus.COMPLETED
        assert done.vars == {"marcado": "sim"}  # the concurrent change was not overwritten
        assert done.version > bumped[0]
        [message] = await h.messages(run.id)
        assert message.status == MessageStatus.SENT
        assert message.provider_message_id


async def test_a_run_finished_during_the_provider_call_keeps_its_end(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    async with harness(settings(tmp_path, gateway)) as h:
        engine = h.engine
        sandbox = engine.providers["gateway"]
        real_send = sandbox.send
        seen: dict[str, Any] = {}

        async def send_then_cancel(message: OutboundMessage) -> SendResult:
            result = await real_send(message)
            seen["cancelled"] = await engine.cancel_run(message.run_id, "operator stop")
            return result

        sandbox.send = send_then_cancel  # type: ignore[method-assign]
        run = await h.start("aviso")

        done = await h.run(run.id)
        assert seen["cancelled"].status == RunStatus.CANCELLED
        assert done.status == RunStatus.CANCELLED  # the `sent` answer did not reopen it
        [message] = await h.messages(run.id)
        assert message.provider_message_id  # the provider's id is still recorded


async def test_a_message_another_worker_took_over_is_left_to_it_not_sent_twice(
    tmp_path: Path, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Our lease lapsed while we rendered: another worker marked the message
    `sending` first. We must not call the provider, nor crash."""
    async with harness(settings(tmp_path, gateway)) as h:
        store = h.engine.store
        real_commit = store.commit
        raced: list[str] = []

        async def commit_after_a_rival(commit: Commit) -> Any:
            wants_sending = [
                m for m in commit.messages if m.expected_status == MessageStatus.QUEUED
            ]
            if wants_sending and not raced:
                rival = replace(wants_sending[0], payload={"rival": True})
                await real_commit(Commit(now=commit.now, messages=[rival]))
                raced.append(rival.message_id)
            return await real_commit(commit)

        store.commit = commit_after_a_rival  # type: ignore[method-assign]
        run = await h.start("aviso")

        (message,) = await h.messages(run.id)
        assert raced == [message.id]
        assert message.status == MessageStatus.SENDING
        assert message.payload == {"rival": True}  # the rival's attempt, untouched
        assert gateway.stats()["requests"] == 0  # we did not send it as well
        # An expected race, not a failure: no error or traceback in the log.
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
