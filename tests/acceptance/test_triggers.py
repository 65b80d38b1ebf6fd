"""Triggers through a real `disparo serve`: a cron campaign, a re-engagement sweep and
an inbound keyword, observed over HTTP.

Real time cannot be fast-forwarded here, and an every-minute cron would make a test
wait up to a minute. So the campaign's fire time is put in the past: an engine on a
virtual clock, ten minutes back, schedules the trigger and stores the audience,
exactly as a `disparo serve` that was down at the fire time would have left the
database. The served engine finds the firing five minutes late, within its
`misfire_grace`, and fans it out at once. The re-engagement flow counts `after: 2s`
(durations take seconds), with sweeps every half second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from engine.clock import VirtualClock
from engine.models import ContactUpsert
from engine.runtime import Engine
from engine.settings import load_settings
from tests.acceptance.conftest import Api, DisparoServer, free_port, run_cli, wait_for, write_config

pytestmark = pytest.mark.acceptance

SMS = """\
start: aviso
steps:
  aviso:
    send: {channel: sms, provider: sandbox_sms, text: "Oi! Temos novidades."}
    next: fim
  fim: {end: completed}
"""


def campaign(fire: datetime) -> str:
    local = fire.astimezone(ZoneInfo("America/Sao_Paulo"))
    return (
        f"""\
flow: campanha
timezone: America/Sao_Paulo
triggers:
  - cron: "{local.minute} {local.hour} * * *"
    audience: "contact.context.plano | default('') == 'ouro'"
    misfire_grace: 1h
"""
        + SMS
    )


REENGAGE = (
    """\
flow: volta
triggers:
  - after: 2s
    since: last_inbound
    unless: "contact.context.vip | default(false)"
"""
    + SMS
)

KEYWORD = (
    """\
flow: promo
triggers:
  - event: reply
    keyword: promoção
"""
    + SMS
)


def serve(tmp_path: Path, *flows: str) -> tuple[Path, DisparoServer]:
    folder = tmp_path / "flows"
    folder.mkdir()
    for text in flows:
        name = text.split("\n", 1)[0].removeprefix("flow: ").strip()
        (folder / f"{name}.yaml").write_text(text)
    port = free_port()
    config = write_config(tmp_path, port=port, flows=folder)
    data = yaml.safe_load(config.read_text())
    data["triggers"] = {"sweep_interval": 0.5}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    run_cli(config, "migrate")
    return config, DisparoServer(config, port, tmp_path / "serve.log")


@pytest.fixture
def running() -> Iterator[list[DisparoServer]]:
    """Servers a test started, stopped when it ends (even when it fails)."""
    servers: list[DisparoServer] = []
    yield servers
    for server in servers:
        server.stop()


def started(api: Api, contact_id: str) -> list[dict[str, Any]]:
    """The run.started events of a contact, oldest first."""
    events = api.ok("GET", f"/v1/contacts/{contact_id}/decisions")["events"]
    found = [e for e in events if e["kind"] == "run.started"]
    return sorted(found, key=lambda e: e["id"])


async def seed_missed_campaign(config: Path, back_then: datetime) -> None:
    """What a server that was down at the fire time left behind: the trigger scheduled,
    the contacts stored."""
    settings = load_settings(config)
    async with Engine(settings, clock=VirtualClock(back_then), run_loop=False) as engine:
        for contact_id, plano in (("ouro-1", "ouro"), ("ouro-2", "ouro"), ("prata-1", "prata")):
            await engine.upsert_contact(
                ContactUpsert(id=contact_id, phone="+5511988887777", context={"plano": plano})
            )


def test_a_campaign_missed_while_down_fires_once_on_start_for_its_audience(
    tmp_path: Path, running: list[DisparoServer]
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    fire = now - timedelta(minutes=5)
    config, server = serve(tmp_path, campaign(fire))
    asyncio.run(seed_missed_campaign(config, now - timedelta(minutes=10)))

    running.append(server)
    api = server.start()

    for contact_id in ("ouro-1", "ouro-2"):
        runs = wait_for(
            lambda c=contact_id: started(api, c),
            lambda found: len(found) >= 1,
            what=f"the campaign's run for {contact_id}",
        )
        assert [(e["data"]["trigger"], e["data"]["fire_time"]) for e in runs] == [
            ("cron", fire.isoformat())
        ]
        run = wait_for(
            lambda r=runs[0]["run_id"]: api.run(r),
            lambda r: r["status"] == "completed",
            what="the campaign's run to complete",
        )
        assert [m["status"] for m in run["messages"]] == ["sent"]
    assert started(api, "prata-1") == []


def test_re_engagement_and_a_keyword_start_runs_in_a_served_engine(
    tmp_path: Path, running: list[DisparoServer]
) -> None:
    _, server = serve(tmp_path, REENGAGE, KEYWORD)
    running.append(server)
    api = server.start()
    new = 201
    api.ok(
        "PUT",
        "/v1/contacts/vip-1",
        {"phone": "+5511977776666", "context": {"vip": True}},
        expect=new,
    )
    api.ok("PUT", "/v1/contacts/c-1", {"phone": "+5511966665555"}, expect=new)
    api.ok("PUT", "/v1/contacts/c-2", {"phone": "+5511955554444"}, expect=new)

    both = [{"type": "reply", "contact": c, "text": "oi"} for c in ("c-1", "vip-1")]
    api.ok("POST", "/v1/events", both, expect=202)
    api.event({"type": "reply", "contact": "c-2", "text": "Promoção!"})

    promo = wait_for(
        lambda: started(api, "c-2"),
        lambda found: any(e["data"]["flow"] == "promo" for e in found),
        what="the keyword to start promo",
    )
    swept = wait_for(
        lambda: started(api, "c-1"),
        lambda found: len(found) >= 1,
        what="the re-engagement run of c-1, 2 s after its reply",
    )
    # vip-1 replied in the same request (same time): the sweep that started c-1 saw it.
    assert started(api, "vip-1") == []
    assert [(e["data"]["flow"], e["data"]["trigger"]) for e in swept] == [("volta", "after")]
    assert (promo[0]["data"]["flow"], promo[0]["data"]["trigger"]) == ("promo", "event")
