"""An opt-out belongs to the person behind a phone: a contact record created for that
phone after its owner said stop (a CRM that imports the number again, a reply
from a number no contact had) is not messaged either."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.models import ContactEvent, ContactUpsert, MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows

FLOW = """\
flow: aviso
defaults:
  provider: sandbox
concurrency: many
start: aviso
steps:
  aviso:
    send: {text: "Oi {{ contact.first_name }}, temos uma novidade."}
    on:
      sent: fim
      skipped: fim
  fim: {end: completed}
"""

PHONE = "+5511955554444"
LEFT = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)


async def test_a_record_created_after_its_phone_opted_out_is_not_messaged(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        # "PARAR" from a number no contact has: a contact of its own, opted out.
        await h.engine.ingest_contact_events(
            [ContactEvent(type="reply", at=h.clock.now(), phone="5511955554444", text="PARAR")]
        )
        await h.engine.settle()
        await h.advance(timedelta(minutes=5))
        # The CRM then creates its own record of the same person and messages it.
        run, _ = await h.engine.start_run(
            "aviso", ContactUpsert(id="crm-9", phone=PHONE, name="Bia")
        )
        await h.engine.settle()

        (message,) = await h.messages(run.id)
        assert message.status == MessageStatus.SKIPPED
        (decision,) = await h.decisions(run.id)
        assert decision["rule"] == "opt_out"
        assert decision["reason"] == "phone_opted_out"
        assert decision["facts"]["opted_out_contact"] == PHONE


async def test_a_record_that_existed_before_an_opt_out_by_id_keeps_its_own_choice(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        await h.engine.upsert_contact(ContactUpsert(id="crm-1", phone=PHONE, name="Bia"))
        await h.engine.upsert_contact(ContactUpsert(id="crm-2", phone=PHONE, name="Bia"))
        await h.advance(timedelta(minutes=1))
        # The API opts one record out by its id: the other record was there already
        # and is not opted out by it (an opt-out by phone would have reached both).
        await h.event("opt_out", contact="crm-1")
        run, _ = await h.engine.start_run("aviso", ContactUpsert(id="crm-2"))
        await h.engine.settle()

        (message,) = await h.messages(run.id)
        assert message.status in LEFT
