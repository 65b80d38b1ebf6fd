"""A tap answers the run whose message offered it: with two runs of one contact
waiting at once, a button of one run's message is no reply in the other."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import MessageStatus
from providers.http import HttpConfig
from tests.fakes.gateway import FakeGateway, Fault
from tests.integration.engine_kit import harness, settings_with_flows
from tests.integration.test_provider_faults import AUTH

BOLETO = """flow: boleto
defaults: {provider: sandbox}
triggers: [{api: {}}]
start: lembrete
steps:
  lembrete:
    send:
      text: Seu boleto vence amanhã.
      buttons: [{id: pagar, title: Pagar agora}]
    on: {button.pagar: fim, reply: transferir}
  transferir:
    send: {text: Vou te passar para um atendente.}
    next: fim
  fim: {end: completed}
"""

PESQUISA = """flow: pesquisa
defaults: {provider: sandbox}
triggers: [{api: {}}]
start: pergunta
steps:
  pergunta:
    send:
      text: Gostou do atendimento?
      buttons: [{id: sim, title: Sim}, {id: nao, title: Não}]
    on: {button.sim: obrigado, button.nao: fim}
  obrigado:
    send: {text: Obrigado!}
    next: fim
  fim: {end: completed}
"""


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


async def test_a_tap_on_one_runs_buttons_is_no_reply_in_the_other(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO, PESQUISA)) as h:
        boleto = await h.start("boleto")
        pesquisa = await h.start("pesquisa")
        await h.advance(timedelta(seconds=10))

        await h.event("button", button_id="sim")  # "Sim" on the survey's message

        assert (await h.run(pesquisa.id)).step == "fim"
        # The boleto run did not take the survey's "Sim" for a reply: no attendant.
        waiting = await h.run(boleto.id)
        assert (waiting.step, waiting.status) == ("lembrete", "waiting")
        assert [m.step for m in await h.messages(boleto.id)] == ["lembrete"]
        ignored = await h.engine.store.list_events(
            run_id=boleto.id, kind_prefix="run.event_ignored", limit=10
        )
        assert ignored[0].data["reason"] == (
            f"`button.sim` answers a message of run {pesquisa.id} (pesquisa, step "
            "`pergunta`), not one of this run"
        )

        await h.event("button", button_id="pagar")  # its own button still counts

        assert (await h.run(boleto.id)).status == "completed"
        assert [m.step for m in await h.messages(boleto.id)] == ["lembrete"]


async def test_a_typed_reply_and_a_tap_no_message_offered_still_reach_every_run(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO, PESQUISA)) as h:
        boleto = await h.start("boleto")
        pesquisa = await h.start("pesquisa")
        await h.advance(timedelta(seconds=10))

        # A template's quick reply: no message lists its id, so it stays a reply.
        await h.event("button", button_id="falar_com_atendente")

        assert [m.step for m in await h.messages(boleto.id)] == ["lembrete", "transferir"]
        assert (await h.run(pesquisa.id)).step == "pergunta"


async def test_a_message_the_provider_refused_offers_nothing_to_tap(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    outro = BOLETO.replace("flow: boleto", "flow: outro").replace(
        "{provider: sandbox}", "{provider: gateway}"
    )
    http = HttpConfig.model_validate(
        {"type": "http", "url": gateway.url, "headers": {"Authorization": AUTH}}
    )
    settings = settings_with_flows(tmp_path, BOLETO, outro, providers={"gateway": http})
    gateway.fail_next(Fault.reject("destinatário inválido", status=422))
    async with harness(settings) as h:
        boleto = await h.start("boleto")
        await h.advance(timedelta(seconds=10))
        refused_run = await h.start("outro")  # newer, same button, refused: never shown
        [refused] = await h.messages(refused_run.id)
        assert refused.status == MessageStatus.FAILED
        assert refused.payload["buttons"][0]["id"] == "pagar"

        await h.event("button", button_id="pagar")

        assert (await h.run(boleto.id)).status == "completed"


NOTA = """flow: nota
defaults: {provider: sandbox}
triggers: [{api: {}}]
start: pergunta
steps:
  pergunta:
    send:
      text: De 0 a 10?
      list:
        button: Escolher nota
        sections: [{title: Notas, rows: [{id: nota_8, title: "8"}, {id: nota_9, title: "9"}]}]
    on: {choice.nota_8: fim, choice.nota_9: fim}
  fim: {end: completed}
"""


async def test_a_list_row_chosen_answers_the_run_whose_list_it_was(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO, NOTA)) as h:
        boleto = await h.start("boleto")
        nota = await h.start("nota")
        await h.advance(timedelta(seconds=10))

        await h.event("choice", button_id="nota_8")

        assert (await h.run(nota.id)).status == "completed"
        assert (await h.run(boleto.id)).step == "lembrete"  # no attendant for a score


@pytest.mark.parametrize(
    "fields",
    [
        {"button_id": "Sim"},  # a vendor that reports the title the contact saw
        {"button_id": "ABGGFlA5Fpa", "text": "Sim"},  # its own id, the title as text
    ],
)
async def test_a_tap_named_by_its_title_is_no_reply_in_the_other_run(
    tmp_path: Path, fields: dict[str, str]
) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO, PESQUISA)) as h:
        boleto = await h.start("boleto")
        pesquisa = await h.start("pesquisa")
        await h.advance(timedelta(seconds=10))

        await h.event("button", **fields)  # "Sim" on the survey's message

        assert [m.step for m in await h.messages(pesquisa.id)] == ["pergunta", "obrigado"]
        # Not to an attendant in the boleto run beside it.
        waiting = await h.run(boleto.id)
        assert (waiting.step, waiting.status) == ("lembrete", "waiting")
        assert [m.step for m in await h.messages(boleto.id)] == ["lembrete"]


async def test_a_typed_title_of_one_runs_button_is_no_reply_in_the_other(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO, PESQUISA)) as h:
        boleto = await h.start("boleto")
        pesquisa = await h.start("pesquisa")
        await h.advance(timedelta(seconds=10))

        await h.event("reply", text="sim")  # typed under the survey's "Sim"

        assert [m.step for m in await h.messages(pesquisa.id)] == ["pergunta", "obrigado"]
        waiting = await h.run(boleto.id)
        assert (waiting.step, waiting.status) == ("lembrete", "waiting")
        ignored = await h.engine.store.list_events(
            run_id=boleto.id, kind_prefix="run.event_ignored", limit=10
        )
        assert f"run {pesquisa.id}" in ignored[0].data["reason"]

        await h.event("reply", text="quero falar com alguém")  # other words: a reply

        assert [m.step for m in await h.messages(boleto.id)] == ["lembrete", "transferir"]


TEMPLATE_BOLETO = BOLETO.replace("flow: boleto", "flow: boleto_tpl").replace(
    "      buttons: [{id: pagar, title: Pagar agora}]\n",
    "      buttons: [{id: pagar, title: Pagar agora}]\n"
    "      template:\n"
    "        name: boleto_vencendo\n"
    '        params: {PrimeiroNome: "Maria", Valor: "R$ 10,00", Vencimento: "30/11"}\n'
    "    rules: {window: template}\n",
)


async def test_a_finished_runs_flow_version_that_no_longer_loads_does_not_stop_taps(
    tmp_path: Path,
) -> None:
    # A template message of a finished run offers its step's buttons, read from the
    # run's flow version. A version stored long ago that this engine no longer loads
    # must not keep the contact's taps from their own run.
    settings = settings_with_flows(tmp_path, TEMPLATE_BOLETO, PESQUISA)
    async with harness(settings) as h:
        old = await h.start("boleto_tpl")
        await h.advance(timedelta(seconds=10))
        await h.engine.cancel_run(old.id)
    with sqlite3.connect(tmp_path / "disparo.db") as db:
        db.execute(
            "UPDATE flow_versions SET source = 'flow: boleto_tpl\n' WHERE flow = ?", (old.flow,)
        )
    edited = TEMPLATE_BOLETO.replace("vence amanhã", "vence hoje")  # the file moved on
    settings = settings_with_flows(tmp_path, edited, PESQUISA)
    async with harness(settings) as h:
        pesquisa = await h.start("pesquisa", key="depois")
        await h.advance(timedelta(seconds=10))

        await h.event("button", button_id="Sim")

        assert [m.step for m in await h.messages(pesquisa.id)] == ["pergunta", "obrigado"]
