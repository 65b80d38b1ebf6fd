"""Contacts an earlier release stored with a zone that is no IANA name.

Before time zones were limited to IANA names, `PUT /v1/contacts` took any name the
host had a file for (`localtime`, `posixrules`, `posix/...`). Those contacts are
still in the store after an upgrade, and the host of the new engine may have no
such file, or one meaning another zone. Their runs go on in the zone a contact
naming none gets (the flow's, else the config's), never with a 500 or a crash.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.models import ContactUpsert, MessageStatus
from tests.integration.engine_kit import START, harness, settings_for, settings_with_flows
from tests.integration.openapi_conformance import checked_client
from tests.integration.test_api import AUTH
from tests.integration.test_cli import _local_config, disparo

FLOW = """\
flow: aviso
timezone: America/Sao_Paulo
defaults: {provider: sandbox_sms, rules: {quiet_hours: "21:00-08:00"}}
start: aviso
steps:
  aviso:
    send: {channel: sms, text: "Aviso"}
    next: fim
  fim: {end: completed}
"""
# 22:00 in São Paulo (quiet) is 01:00 UTC (not quiet on a UTC host's `localtime`).
AT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("stored", ["localtime", "posix/Gone/Zone"])
async def test_a_run_of_a_contact_stored_with_a_non_iana_zone_uses_the_flow_zone(
    tmp_path: Path, stored: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_with_flows(tmp_path, FLOW)
    async with harness(settings, at=AT) as h:
        await h.engine.store.upsert_contact(
            ContactUpsert(id="c-1", phone="+5511999998888", timezone=stored), AT
        )
        async with checked_client(h.engine) as client:
            with caplog.at_level(logging.WARNING):
                answer = await client.post(
                    "/v1/runs", json={"flow": "aviso", "contact": {"id": "c-1"}}, headers=AUTH
                )
                assert answer.status == 201, await answer.text()
                await h.engine.settle()
            run_id = (await answer.json())["run_id"]

        (message,) = await h.messages(run_id)
        # Quiet in São Paulo until 08:00 (11:00 UTC), as for a contact naming no zone.
        assert message.status == MessageStatus.QUEUED
        assert message.next_attempt_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
        (quiet,) = [d for d in await h.decisions(run_id) if d["rule"] == "quiet_hours"]
        assert quiet["facts"]["timezone"] == "America/Sao_Paulo"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(f"'{stored}'" in w and "PUT /v1/contacts/c-1" in w for w in warnings), warnings


async def test_why_reads_a_contact_stored_with_a_zone_this_host_lacks(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    settings = settings_for(tmp_path, storage=f"sqlite:///{tmp_path / 'd.db'}")
    async with harness(settings) as h:  # 10:00 in São Paulo
        await h.engine.store.upsert_contact(
            ContactUpsert(id="c-1", phone="+5511999998888", timezone="posix/Gone/Zone"), START
        )
        await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})

    result = disparo("why", "c-1", "--config", str(config))

    assert result.returncode == 0, result.stderr
    assert "times in America/Sao_Paulo" in result.stdout
    assert "2026-11-23 10:00:00" in result.stdout  # the run began at 10:00 there


async def test_status_counts_contacts_stored_with_a_non_iana_zone(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    settings = settings_for(tmp_path, storage=f"sqlite:///{tmp_path / 'd.db'}")
    async with harness(settings) as h:
        for contact, zone in (("c-1", "localtime"), ("c-2", "localtime"), ("c-3", "Brazil/East")):
            await h.engine.store.upsert_contact(
                ContactUpsert(id=contact, phone="+5511999998888", timezone=zone), START
            )

    text = disparo("status", "--config", str(config))
    as_json = disparo("status", "--json", "--config", str(config))

    assert text.returncode == 0, text.stderr
    assert "contacts whose timezone is no IANA name: 2 (localtime: 2)" in text.stdout
    assert "PUT /v1/contacts/{id}" in text.stdout
    assert json.loads(as_json.stdout)["non_iana_timezones"] == {"localtime": 2}
