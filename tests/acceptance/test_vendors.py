"""The three vendors' adapters end to end: a real `disparo serve` and the vendors' fakes.

Each fake (``tests.fakes.robbu``, ``tests.fakes.altu``, ``tests.fakes.interflow``)
runs as a subprocess that enforces its vendor's document; Altu and Interflow post
their status webhooks to ``/webhooks/<provider>?token=<webhook_secret>`` of the
server, the way the real services would. One flow per provider runs to its end:

- ``vendor_robbu``: a text; Robbu documents no status webhook, so the step moves on
  when the message is ``sent``;
- ``vendor_altu``: reply buttons (Altu sends no plain text); Altu reports sent,
  delivered and read, and the step moves on when the message is ``read``;
- ``vendor_interflow``: a text; Interflow reports delivered then read, and the step
  moves on when the message is ``read``.

A `timeout:` on the webhook-driven steps ends the run ``failed`` instead of leaving
it waiting, so a lost webhook shows as a wrong status rather than a hang.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.acceptance.conftest import (
    DisparoServer,
    FakeProcess,
    free_port,
    run_cli,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.acceptance

# What the fakes accept (their defaults).
ROBBU = {
    "company": "acme",
    "username": "api.disparo",
    "password": "s3nha-da-api-robbu",
    "private_token": "af5addfsdf52-a5dfsc-44fdf6-80bc-eda1d2af8",
}
ALTU_TOKEN = "altu-test-token-0123456789"
ALTU_PATH = "/zenvia/disparo/4321"
INTERFLOW_KEY = "if_live_fake_3b9c2d7e41a8"
INTERFLOW_CHANNEL = "550e8400-e29b-41d4-a716-446655440000"
ALTU_SECRET = "altu-webhook-secret-acceptance"
INTERFLOW_SECRET = "interflow-webhook-secret-acceptance"

# Seconds between the fakes' status webhooks (below the dispatcher's poll interval).
ALTU_STATUS_DELAY = 0.05
INTERFLOW_DELIVERED_AFTER, INTERFLOW_READ_AFTER = 0.05, 0.1

FLOWS = {
    "vendor_robbu": """\
        flow: vendor_robbu
        description: One text through Robbu, which reports nothing after sent.
        defaults:
          provider: robbu
          rules:
            window: ignore
        start: aviso
        steps:
          aviso:
            send:
              text: "Oi {{ contact.first_name }}! Aviso pela Robbu."
            on:
              sent: fim
          fim:
            end: completed
        """,
    "vendor_altu": """\
        flow: vendor_altu
        description: Reply buttons through Altu; ends when Altu reports them read.
        defaults:
          provider: altu
          rules:
            window: ignore
        start: pergunta
        steps:
          pergunta:
            send:
              text: "Oi {{ contact.first_name }}! Confirma a entrega?"
              buttons:
                - {id: sim, title: Sim}
                - {id: nao, title: Não}
            on:
              read: fim
            timeout: {after: 30s, goto: sem_leitura}
          sem_leitura:
            end: failed
          fim:
            end: completed
        """,
    "vendor_interflow": """\
        flow: vendor_interflow
        description: One text through Interflow; ends when Interflow reports it read.
        defaults:
          provider: interflow
          rules:
            window: ignore
        start: aviso
        steps:
          aviso:
            send:
              text: "Oi {{ contact.first_name }}! Aviso pela Interflow."
            on:
              read: fim
            timeout: {after: 30s, goto: sem_leitura}
          sem_leitura:
            end: failed
          fim:
            end: completed
        """,
}

CONTACTS = {
    "vendor_robbu": {"id": "robbu-1", "phone": "+55 11 99999-0001", "name": "Rita Borges"},
    "vendor_altu": {"id": "altu-1", "phone": "+55 35 98800-1234", "name": "Alice Tupi"},
    "vendor_interflow": {"id": "interflow-1", "phone": "+55 21 98888-0003", "name": "Ivo Flores"},
}


@contextlib.contextmanager
def running(*processes: FakeProcess | DisparoServer) -> Iterator[None]:
    """Stop every process on the way out, whatever happened."""
    try:
        yield
    finally:
        for process in reversed(processes):
            process.stop()


def webhook_url(port: int, provider: str, secret: str) -> str:
    return f"http://127.0.0.1:{port}/webhooks/{provider}?token={secret}"


def vendor_providers(
    robbu: FakeProcess, altu: FakeProcess, interflow: FakeProcess
) -> dict[str, Any]:
    return {
        "robbu": {"type": "robbu", "base_url": robbu.base_url, "channel": "whatsapp", **ROBBU},
        "altu": {
            "type": "altu",
            "url": altu.base_url + ALTU_PATH,
            "token": ALTU_TOKEN,
            "webhook_secret": ALTU_SECRET,
        },
        "interflow": {
            "type": "interflow",
            "base_url": interflow.base_url,
            "api_key": INTERFLOW_KEY,
            "channel_id": INTERFLOW_CHANNEL,
            "rate_limit": "300/min",
            "webhook_secret": INTERFLOW_SECRET,
        },
    }


def write_vendor_config(tmp_path: Path, port: int, providers: dict[str, Any]) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    for name, text in FLOWS.items():
        (flows / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    config = write_config(tmp_path, port=port, providers=providers, flows=flows)
    # No template is sent: an empty catalogue keeps the test off config/templates.yaml.
    templates = tmp_path / "templates.yaml"
    templates.write_text("templates: {}\n", encoding="utf-8")
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["templates"] = str(templates)
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return config


def status_kinds(run: dict[str, Any]) -> list[str]:
    """The provider status reports in a run's history, oldest first."""
    return [e["kind"] for e in run["history"] if e["kind"].startswith("status.")]


def moved_by(history: list[dict[str, Any]], step: str) -> str | None:
    """The kind of the last status report before the history entered ``step``."""
    last = None
    for event in history:
        if event["kind"].startswith("status."):
            last = event["kind"]
        elif event["kind"] == "run.step" and event["data"]["step"] == step:
            return last
    return None


def entered(run: dict[str, Any]) -> list[str]:
    return [e["data"]["step"] for e in run["history"] if e["kind"] == "run.step"]


def test_one_flow_per_vendor_runs_to_its_end_through_the_vendors_webhooks(tmp_path: Path) -> None:
    port = free_port()
    robbu = FakeProcess("robbu", free_port(), tmp_path / "robbu.log")
    altu = FakeProcess(
        "altu",
        free_port(),
        tmp_path / "altu.log",
        "--status-webhook",
        webhook_url(port, "altu", ALTU_SECRET),
        "--statuses",
        "sent,delivered,read",
        "--status-delay",
        str(ALTU_STATUS_DELAY),
    )
    interflow = FakeProcess(
        "interflow",
        free_port(),
        tmp_path / "interflow.log",
        "--webhook-url",
        webhook_url(port, "interflow", INTERFLOW_SECRET),
        "--delivered-after",
        str(INTERFLOW_DELIVERED_AFTER),
        "--read-after",
        str(INTERFLOW_READ_AFTER),
    )
    config = write_vendor_config(tmp_path, port, vendor_providers(robbu, altu, interflow))
    run_cli(config, "check")
    run_cli(config, "migrate")
    server = DisparoServer(config, port, tmp_path / "serve.log")

    with running(robbu, altu, interflow, server):
        for fake in (robbu, altu, interflow):
            fake.spawn()  # all three start at once; then each must answer
        for fake in (robbu, altu, interflow):
            fake.ready()
        api = server.start()
        run_ids = {
            flow: api.ok(
                "POST",
                "/v1/runs",
                {"flow": flow, "contact": contact, "idempotency_key": f"{flow}-once"},
                expect=201,
            )["run_id"]
            for flow, contact in CONTACTS.items()
        }
        runs = wait_for(
            lambda: {flow: api.run(run_id) for flow, run_id in run_ids.items()},
            lambda rs: all(r["status"] not in ("active", "waiting") for r in rs.values()),
            what="every vendor's run finished",
        )
        # The run moves on with the `read` report; the fakes note the answer just after.
        altu_stats = wait_for(
            altu.stats, lambda s: len(s["webhook_answers"]) == 3, what="altu's 3 webhooks answered"
        )
        robbu_stats, interflow_stats = robbu.stats(), interflow.stats()
        altu_received = altu.client.ok("GET", "/_received")
        messages = {
            flow: [api.message(m["id"]) for m in run["messages"]] for flow, run in runs.items()
        }
    log = server.log()

    assert {flow: r["status"] for flow, r in runs.items()} == dict.fromkeys(FLOWS, "completed"), log
    for flow, run in runs.items():
        assert run["step"] == "fim", (flow, run)
        assert len(run["messages"]) == 1, (flow, run["messages"])
        assert [m["status"] for m in messages[flow]] == [m["status"] for m in run["messages"]]
    assert entered(runs["vendor_robbu"]) == ["aviso", "fim"]
    assert entered(runs["vendor_altu"]) == ["pergunta", "fim"]
    assert entered(runs["vendor_interflow"]) == ["aviso", "fim"]

    # Robbu: one login, one SendMessage the fake took as documented; the message stays
    # `sent` (no id, no webhook) and that alone ended the step.
    assert robbu_stats == {
        "logins": 1,
        "requests": {"/v1/login": 1, "/v1/sendmessage": 1},
        "sent": 1,
        "refusals": [],
    }
    (robbu_message,) = messages["vendor_robbu"]
    assert robbu_message["provider"] == "robbu"
    assert robbu_message["status"] == "sent"
    assert list(robbu_message["status_at"]) == ["queued", "sending", "sent"]
    assert robbu_message["provider_message_id"] is None
    assert robbu_message["last_error"] is None
    assert robbu_message["payload"]["type"] == "text"
    assert robbu_message["payload"]["body"] == "Oi Rita! Aviso pela Robbu."

    # Altu: one button notification, exactly the documented body; its three status
    # webhooks were taken (200) and the `read` one ended the step.
    (altu_message,) = messages["vendor_altu"]
    assert altu_stats["requests"] == 1
    assert altu_stats["delivered_by_external_id"] == {altu_message["idempotency_key"]: 1}
    assert altu_stats["duplicates"] == {}
    assert altu_stats["webhook_answers"] == [200, 200, 200]
    (body,) = altu_received["bodies"]
    assert body["destination"] == "35988001234"
    assert body["externalId"] == altu_message["idempotency_key"]
    assert body["contents"] == [
        {
            "type": "button",
            "body": "Oi Alice! Confirma a entrega?",
            "buttons": [{"id": "sim", "title": "Sim"}, {"id": "nao", "title": "Não"}],
        }
    ]
    assert "templateId" not in body
    assert body["context"]["disparo_run"] == run_ids["vendor_altu"]
    (answer,) = altu_received["answers"]
    assert altu_message["provider"] == "altu"
    assert altu_message["provider_message_id"] == str(answer["message_id"])
    assert altu_message["status"] == "read"
    assert list(altu_message["status_at"]) == ["queued", "sending", "sent", "delivered", "read"]
    assert altu_message["last_error"] is None

    # Interflow: one text accepted (201); delivered and read posted back and taken.
    (interflow_message,) = messages["vendor_interflow"]
    assert interflow_stats == {
        "requests": 1,
        "accepted": 1,
        "answers": {"201": 1},
        "webhooks_posted": 2,
    }
    assert interflow_message["provider"] == "interflow"
    assert interflow_message["provider_message_id"].startswith("msg_")
    assert interflow_message["status"] == "read"
    assert list(interflow_message["status_at"]) == [
        "queued",
        "sending",
        "sent",
        "delivered",
        "read",
    ]
    assert interflow_message["last_error"] is None
    assert interflow_message["payload"]["type"] == "text"
    assert interflow_message["payload"]["body"] == "Oi Ivo! Aviso pela Interflow."

    # The webhook-driven transitions: each vendor's reports are in its run's history,
    # matched to the message, and `read` (not `delivered`) moved the step to `fim`.
    assert status_kinds(runs["vendor_robbu"]) == []  # `sent` came from the send itself
    assert status_kinds(runs["vendor_altu"]) == ["status.sent", "status.delivered", "status.read"]
    assert status_kinds(runs["vendor_interflow"]) == ["status.delivered", "status.read"]
    for flow, message in (("vendor_altu", altu_message), ("vendor_interflow", interflow_message)):
        history = runs[flow]["history"]
        for event in history:
            if event["kind"].startswith("status."):
                assert event["message_id"] == message["id"], (flow, event)
                assert event["data"]["provider_message_id"] == message["provider_message_id"]
        assert moved_by(history, "fim") == "status.read", (flow, history)
        ignored = [e["data"]["reason"] for e in history if e["kind"] == "run.event_ignored"]
        assert any("`delivered`" in reason for reason in ignored), (flow, ignored)
    assert [
        e["data"]["idempotency_key"]
        for e in runs["vendor_altu"]["history"]
        if e["kind"].startswith("status.")
    ] == [altu_message["idempotency_key"]] * 3
