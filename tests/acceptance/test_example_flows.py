"""Each example flow in flows/, run to its end by a real `disparo serve` over HTTP.

The sandbox reports sent at once, delivered after 0.2 s and read after 0.4 s; the
contact's side (replies, button taps, list choices) is played through
``POST /v1/events``, as the system in front of the provider would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.acceptance.conftest import Api, wait_for

pytestmark = pytest.mark.acceptance

BOLETO = {"valor": 1670, "vencimento": "2026-11-30"}


def start_run(api: Api, flow: str, contact: dict[str, Any], **extra: Any) -> str:
    body = {"flow": flow, "contact": contact, **extra}
    created = api.ok("POST", "/v1/runs", body, expect=201)
    assert created["status"] in ("active", "waiting")
    run_id: str = created["run_id"]
    return run_id


def wait_run(api: Api, run_id: str, what: str, until: Callable[[dict[str, Any]], bool]) -> Any:
    return wait_for(lambda: api.run(run_id), until, what=f"run {run_id}: {what}")


def statuses(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["step"], m["status"]) for m in run["messages"]]


def kinds(run: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in run["history"]]


def entered(run: dict[str, Any]) -> list[str]:
    return [e["data"]["step"] for e in run["history"] if e["kind"] == "run.step"]


# ------------------------------------------------------------------ cobranca_boleto


def test_boleto_read_then_pagar_hands_a_large_amount_to_an_agent(disparo: Api) -> None:
    api = disparo
    contact = {"id": "boleto-1", "phone": "+55 11 99999-8888", "name": "Maria Souza"}
    request = {
        "flow": "cobranca_boleto",
        "contact": contact,
        "context": BOLETO,
        "idempotency_key": "boleto-1-2026-11",
    }
    first = api.request("POST", "/v1/runs", request)
    assert first.status == 201, first.body
    run_id = first.body["run_id"]
    assert first.body["step"] == "lembrete"

    # A caller retrying the same request gets the same run, not a second one.
    again = api.request("POST", "/v1/runs", request)
    assert again.status == 200, again.body
    assert again.body["run_id"] == run_id

    # No inbound message ever: the window is closed, so the approved template goes;
    # once the contact reads it the run waits for an answer.
    run = wait_run(
        api,
        run_id,
        "reminder read, waiting for an answer",
        lambda r: statuses(r) == [("lembrete", "read")] and r["step"] == "aguardando_resposta",
    )
    assert run["status"] == "waiting"
    (reminder,) = run["messages"]
    assert reminder["provider"] == "sandbox"
    assert reminder["channel"] == "whatsapp"
    assert reminder["payload"]["type"] == "template"
    assert reminder["payload"]["name"] == "boleto_vencendo"
    assert reminder["payload"]["params"] == {
        "PrimeiroNome": "Maria",
        "Valor": "R$ 1.670,00",
        "Vencimento": "30/11",
    }
    assert list(reminder["status_at"]) == ["queued", "sending", "sent", "delivered", "read"]
    assert reminder["provider_message_id"].startswith("sbx-")
    window = [
        e["data"]
        for e in run["history"]
        if e["kind"] == "decision" and e["data"]["rule"] == "window"
    ]
    assert [(d["outcome"], d["step"]) for d in window] == [("template", "lembrete")]

    api.event({"type": "button", "contact": "boleto-1", "button_id": "pagar"})

    # valor > 1000: pagamento branches to transferir, which sends, hands off and ends.
    run = wait_run(
        api,
        run_id,
        "completed with the handover message read",
        lambda r: r["status"] == "completed" and statuses(r)[-1:] == [("transferir", "read")],
    )
    assert statuses(run) == [("lembrete", "read"), ("transferir", "read")]
    assert run["step"] == "fim"
    assert entered(run) == [
        "lembrete",
        "aguardando_resposta",
        "pagamento",
        "transferir",
        "atendimento",
        "fim",
    ]
    handover = run["messages"][1]
    assert handover["payload"]["type"] == "text"
    assert handover["payload"]["body"].startswith("Certo, Maria! Vou te passar para um atendente.")
    # Every message is visible on its own too, with the same status.
    for message in run["messages"]:
        assert api.message(message["id"])["status"] == message["status"]

    contact_view = api.contact("boleto-1")
    assert contact_view["phone"] == "+5511999998888"  # normalised to E.164
    assert contact_view["attendance"] is not None
    assert contact_view["attendance"]["attendant"] == "Operador"
    assert contact_view["last_outbound_at"] is not None
    assert contact_view["last_inbound_at"] is not None  # the button tap


def test_boleto_to_a_failing_number_falls_back_to_sms_which_fails_too(disparo: Api) -> None:
    api = disparo
    contact = {"id": "boleto-2", "phone": "+5511988880000", "name": "João Lima"}
    run_id = start_run(api, "cobranca_boleto", contact, context=BOLETO)

    # The sandbox takes both messages and reports them failed after 0.2 s: the
    # reminder's failure sends the SMS; the SMS step moves on to `fim` once sent,
    # so its own later failure is recorded on the message and otherwise ignored.
    run = wait_run(
        api,
        run_id,
        "reminder and SMS both failed",
        lambda r: (
            statuses(r) == [("lembrete", "failed"), ("sms", "failed")] and r["status"] != "waiting"
        ),
    )
    assert run["status"] == "completed"
    assert run["step"] == "fim"
    assert entered(run) == ["lembrete", "sms", "fim"]
    reminder, sms = run["messages"]
    assert (reminder["provider"], reminder["channel"]) == ("sandbox", "whatsapp")
    assert (sms["provider"], sms["channel"]) == ("sandbox_sms", "sms")
    assert reminder["last_error"]
    assert sms["last_error"]
    assert "sent" in sms["status_at"]
    assert sms["payload"]["body"].startswith("João, seu boleto de R$ 1.670,00 vence em 30/11.")
    assert "run.event_ignored" in kinds(run)  # the SMS's late failure
    for message in run["messages"]:
        assert api.message(message["id"])["status"] == "failed"


# ------------------------------------------------------------------ pesquisa_nps


def test_nps_stores_the_score_on_the_contact_and_thanks_a_promoter(disparo: Api) -> None:
    api = disparo
    contact = {"phone": "+5511977776666", "name": "Ana Paula"}
    assert api.ok("PUT", "/v1/contacts/nps-1", contact, expect=201)["id"] == "nps-1"
    # The contact just wrote: the 24 h window is open, so the list menu may go.
    api.event({"type": "reply", "contact": "nps-1", "text": "oi"})
    assert api.contact("nps-1")["last_inbound_at"] is not None

    run_id = start_run(api, "pesquisa_nps", {"id": "nps-1"})
    run = wait_run(
        api,
        run_id,
        "survey delivered, waiting for the score",
        lambda r: (
            r["step"] == "aguardando_nota"
            and statuses(r)[:1] in ([("pergunta", "delivered")], [("pergunta", "read")])
        ),
    )
    (question,) = run["messages"]
    assert question["payload"]["type"] == "list"
    rows = [row["id"] for s in question["payload"]["sections"] for row in s["rows"]]
    assert rows[:2] == ["nota_10", "nota_9"]
    assert len(rows) == 10

    api.event({"type": "choice", "contact": "nps-1", "button_id": "nota_10"})

    run = wait_run(
        api,
        run_id,
        "completed with the thanks read",
        lambda r: (
            r["status"] == "completed" and statuses(r)[-1:] == [("obrigado_promotor", "read")]
        ),
    )
    assert statuses(run) == [("pergunta", "read"), ("obrigado_promotor", "read")]
    assert entered(run)[-5:] == ["nota_10", "classifica", "promotor", "obrigado_promotor", "fim"]
    assert run["messages"][1]["payload"]["body"] == "Que bom saber, Ana! Obrigado pela nota 10 💚"
    stored = api.contact("nps-1")["context"]
    assert stored["nps_nota"] == 10
    assert stored["nps_categoria"] == "promotor"


# ------------------------------------------------------------------ reengajamento_23h


def test_reengagement_23h_after_the_last_message_then_depois_says_goodbye(disparo: Api) -> None:
    api = disparo
    api.ok(
        "PUT", "/v1/contacts/reengaja-1", {"phone": "+5521966665555", "name": "Carla"}, expect=201
    )
    wrote = datetime.now(UTC) - timedelta(hours=23)
    api.event(
        {"type": "reply", "contact": "reengaja-1", "text": "vou ver", "at": wrote.isoformat()}
    )
    seen = datetime.fromisoformat(api.contact("reengaja-1")["last_inbound_at"])
    assert abs(seen - wrote) < timedelta(seconds=1)

    # 23 h later the window (with its 15 min margin) is still open and the contact
    # has been quiet for more than 30 min: the nudge goes as plain buttons.
    run_id = start_run(
        api, "reengajamento_23h", {"id": "reengaja-1"}, idempotency_key="reengaja-1-episode"
    )
    run = wait_run(
        api,
        run_id,
        "nudge read",
        lambda r: statuses(r) == [("cutucada", "read")],
    )
    (nudge,) = run["messages"]
    assert nudge["payload"]["type"] == "buttons"
    assert [b["id"] for b in nudge["payload"]["buttons"]] == ["continuar", "depois"]
    decided = {
        e["data"]["rule"]: e["data"]["outcome"] for e in run["history"] if e["kind"] == "decision"
    }
    assert decided["window"] == "pass"
    assert decided["inactivity"] == "pass"

    api.event({"type": "button", "contact": "reengaja-1", "button_id": "depois"})

    run = wait_run(
        api,
        run_id,
        "completed with the goodbye read",
        lambda r: r["status"] == "completed" and statuses(r)[-1:] == [("ate_logo", "read")],
    )
    assert statuses(run) == [("cutucada", "read"), ("ate_logo", "read")]
    assert entered(run) == ["cutucada", "ate_logo", "fim"]
    assert run["messages"][1]["payload"]["body"].startswith("Tudo bem, Carla!")
    assert api.contact("reengaja-1")["attendance"] is None  # `depois` is not a handover

    # The same key again: the same (finished) run, not a new nudge.
    again = api.request(
        "POST",
        "/v1/runs",
        {
            "flow": "reengajamento_23h",
            "contact": {"id": "reengaja-1"},
            "idempotency_key": "reengaja-1-episode",
        },
    )
    assert (again.status, again.body["run_id"]) == (200, run_id)
    assert len(api.run(run_id)["messages"]) == 2
