"""The example flows run to their end in-process: virtual clock, SQLite, sandbox."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.models import ContactEvent, MessageStatus, RunStatus
from tests.integration.engine_kit import harness, settings_for

S = MessageStatus


async def test_boleto_read_then_pagar_goes_to_an_agent_for_a_large_amount(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        await h.advance(timedelta(seconds=6))

        (reminder,) = await h.messages(run.id)
        assert reminder.status == S.READ
        # No inbound message ever: the 24 h window is closed, the approved template goes.
        assert reminder.payload["type"] == "template"
        assert reminder.payload["params"] == {
            "PrimeiroNome": "Maria",
            "Valor": "R$ 1.670,00",
            "Vencimento": "30/11",
        }
        assert (await h.run(run.id)).step == "aguardando_resposta"

        await h.event("button", button_id="pagar")
        await h.advance(timedelta(seconds=6))

        done = await h.run(run.id)
        assert done.status == RunStatus.COMPLETED
        steps = [m.step for m in await h.messages(run.id)]
        assert steps == ["lembrete", "transferir"]
        contact = await h.engine.get_contact("c-1")
        assert contact.attendance is not None  # handed over to a live agent


async def test_boleto_small_amount_gets_the_payment_instructions(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.event("reply", text="oi")  # window open: the buttons go, not the template
        run = await h.start("cobranca_boleto", context={"valor": 250, "vencimento": "2026-11-30"})
        await h.advance(timedelta(minutes=11))  # the reply was < 10 min ago: deferred first

        (reminder,) = await h.messages(run.id)
        assert reminder.payload["type"] == "buttons"
        assert [b["id"] for b in reminder.payload["buttons"]] == ["pagar", "ajuda"]
        decisions = await h.decisions(run.id)
        deferred = [d for d in decisions if d["rule"] == "inactivity" and d["outcome"] == "defer"]
        assert deferred
        assert deferred[0]["reason"] == "inactive_recently"

        await h.event("button", button_id="pagar")
        await h.advance(timedelta(seconds=6))

        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        steps = [m.step for m in await h.messages(run.id)]
        assert steps == ["lembrete", "como_pagar"]


async def test_boleto_not_read_in_two_hours_sends_the_sms(tmp_path: Path) -> None:
    never_read = settings_for(tmp_path, provider_changes={"sandbox": {"read_after": None}})
    async with harness(never_read) as h:
        run = await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        await h.advance(timedelta(hours=1, minutes=59))
        assert [m.step for m in await h.messages(run.id)] == ["lembrete"]

        await h.advance(timedelta(minutes=2))
        await h.advance(timedelta(seconds=3))

        reminder, sms = await h.messages(run.id)
        assert reminder.status == S.DELIVERED
        # The flow's own reminder two hours ago is not "recent contact" for its SMS.
        assert (sms.channel, sms.provider, sms.status) == ("sms", "sandbox_sms", S.DELIVERED)
        assert sms.payload["body"].startswith("Maria, seu boleto de R$ 1.670,00 vence em 30/11.")
        assert (await h.run(run.id)).status == RunStatus.COMPLETED


async def test_boleto_to_a_failing_number_falls_back_to_sms(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start(
            "cobranca_boleto",
            phone="+5511988880000",
            context={"valor": 1670, "vencimento": "2026-11-30"},
        )
        await h.advance(timedelta(seconds=5))

        reminder, sms = await h.messages(run.id)
        assert reminder.status == S.FAILED
        assert reminder.last_error
        assert sms.step == "sms"
        assert sms.status == S.FAILED  # the sandbox fails this number on every channel
        # `sms` moves on to `fim` once sent; its late failure is recorded, not acted on.
        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        assert (await h.kinds(run.id))[-1] == "run.event_ignored"


async def test_nps_stores_the_score_and_thanks_a_promoter(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.event("reply", text="obrigada pela ajuda")
        run = await h.start("pesquisa_nps")
        await h.advance(timedelta(seconds=6))
        (question,) = await h.messages(run.id)
        assert question.payload["type"] == "list"
        assert question.status == S.READ

        await h.event("choice", button_id="nota_10")
        await h.advance(timedelta(seconds=6))

        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        contact = await h.engine.get_contact("c-1")
        assert contact.context["nps_nota"] == 10
        assert len(await h.messages(run.id)) == 2  # the question and the thanks


async def test_nps_is_skipped_when_the_window_is_closed(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start("pesquisa_nps")
        await h.advance(timedelta(seconds=1))

        (question,) = await h.messages(run.id)
        assert question.status == S.SKIPPED
        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        window = [d for d in await h.decisions(run.id) if d["rule"] == "window"]
        assert window[-1]["outcome"] == "skip"


async def test_reengagement_button_depois_says_goodbye(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.event("reply", text="quero saber do meu pedido")
        await h.advance(timedelta(hours=23))
        run = await h.start("reengajamento_23h")
        await h.advance(timedelta(seconds=6))
        (nudge,) = await h.messages(run.id)
        assert nudge.payload["type"] == "buttons"

        await h.event("button", button_id="depois")
        await h.advance(timedelta(seconds=6))

        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        assert [m.step for m in await h.messages(run.id)] == ["cutucada", "ate_logo"]


async def test_reengagement_too_close_to_the_window_end_is_skipped(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.event("reply", text="oi")
        await h.advance(timedelta(hours=23, minutes=50))  # inside the 15 min margin
        run = await h.start("reengajamento_23h")
        await h.advance(timedelta(seconds=1))

        (nudge,) = await h.messages(run.id)
        assert nudge.status == S.SKIPPED
        assert (await h.run(run.id)).status == RunStatus.COMPLETED


async def test_reengagement_starts_by_itself_23h_after_a_contact_without_a_name_wrote(
    tmp_path: Path,
) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.engine.ingest_contact_events(
            [ContactEvent(type="reply", at=h.clock.now(), phone="+5511977776666", text="oi")]
        )
        await h.advance(timedelta(hours=23, minutes=2))

        runs = await h.engine.store.list_events(contact_id="+5511977776666", limit=100)
        started = [e for e in runs if e.kind == "run.started"]
        assert len(started) == 1
        (nudge,) = await h.messages(str(started[0].run_id))
        assert nudge.status in (S.SENT, S.DELIVERED, S.READ)
        assert nudge.payload["body"].startswith("Oi! Vi que a gente não terminou")


async def test_a_reminder_that_cannot_be_rendered_says_why_in_the_audit(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start("cobranca_boleto", context={"valor": 89.9})  # no vencimento
        await h.advance(timedelta(seconds=6))

        assert [m.status for m in await h.messages(run.id)] == [S.FAILED, S.FAILED]
        events = await h.engine.decisions("c-1")
        failed = sorted((e for e in events if e.kind == "message.failed"), key=lambda e: e.id)
        assert [(e.data["step"], e.data["provider"]) for e in failed] == [
            ("lembrete", "sandbox"),
            ("sms", "sandbox_sms"),
        ]
        assert all("context.vencimento" in e.data["error"] for e in failed)


async def test_nps_goes_after_the_attendance_the_boleto_reminder_led_to(tmp_path: Path) -> None:
    # The survey is meant to go right after an attendance; the boleto reminder's
    # "Falar com atendente" path messages the contact and hands them to an agent
    # minutes before. That message must not cost the contact their survey.
    async with harness(settings_for(tmp_path)) as h:
        await h.event("reply", text="oi")
        boleto = await h.start(
            "cobranca_boleto", context={"valor": 250, "vencimento": "2026-11-30"}
        )
        await h.advance(timedelta(seconds=6))
        await h.event("button", button_id="ajuda")
        await h.advance(timedelta(minutes=20))
        assert (await h.run(boleto.id)).status == RunStatus.COMPLETED
        await h.event("attendance_ended")  # the agent closes the conversation

        survey = await h.start("pesquisa_nps", key="nps-c-1-2026-W48")
        await h.advance(timedelta(seconds=6))

        (question,) = await h.messages(survey.id)
        assert question.status == S.READ, await h.decisions(survey.id)
        # The flow's advice for one survey a week: the week's key starts no second one.
        await h.advance(timedelta(days=1))
        again = await h.start("pesquisa_nps", key="nps-c-1-2026-W48")
        assert again.id == survey.id
        assert len(await h.messages(survey.id)) == 1
