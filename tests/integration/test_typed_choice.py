"""A reply that is the title of a button or list row the run showed counts as that
tap: "pagar agora" typed under the buttons goes where "Pagar agora" tapped goes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.engine_kit import harness, settings_with_flows

BOLETO = """flow: boleto
defaults: {provider: sandbox}
triggers: [{api: {}}]
start: lembrete
steps:
  lembrete:
    send:
      text: Seu boleto vence amanhã.
      buttons: [{id: pagar, title: Pagar agora}, {id: ajuda, title: Falar com atendente}]
    on: {button.pagar: pagamento, reply: transferir}
  pagamento:
    send: {text: Pague com o Pix.}
    next: fim
  transferir:
    send: {text: Vou te passar para um atendente.}
    next: fim
  fim: {end: completed}
"""

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
        sections: [{title: Notas, rows: [{id: nota_8, title: "8"}, {id: nota_10, title: "10"}]}]
    on: {choice.nota_8: oito, reply: nao_entendi}
  nao_entendi:
    send: {text: Toque em Escolher nota.}
    next: espera
  espera:
    wait: {for: reply, up_to: 1h}
    on: {choice.nota_8: oito, reply: nao_entendi}
  oito: {end: completed}
"""


@pytest.mark.parametrize(
    "typed", ["Pagar agora", "pagar agora", "  PAGAR   AGORA!  ", "*Pagar agora*"]
)
async def test_a_buttons_title_typed_is_that_button(tmp_path: Path, typed: str) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO)) as h:
        run = await h.start("boleto")
        await h.advance(timedelta(seconds=10))

        await h.event("reply", text=typed)

        # Not to an attendant: the contact chose to pay, in words.
        assert [m.step for m in await h.messages(run.id)] == ["lembrete", "pagamento"]


async def test_other_words_are_still_a_reply(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO)) as h:
        run = await h.start("boleto")
        await h.advance(timedelta(seconds=10))

        await h.event("reply", text="quero pagar agora mesmo")

        assert [m.step for m in await h.messages(run.id)] == ["lembrete", "transferir"]


async def test_a_list_rows_title_typed_after_a_nudge_is_that_row(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, NOTA)) as h:
        run = await h.start("nota")
        await h.advance(timedelta(seconds=10))
        await h.event("reply", text="oito")  # not a row: the nudge goes
        await h.advance(timedelta(seconds=10))

        await h.event("reply", text="8")  # the row "8" of the list shown before the nudge

        done = await h.run(run.id)
        assert (done.step, done.status) == ("oito", "completed")
        assert [m.step for m in await h.messages(run.id)] == ["pergunta", "nao_entendi"]


# Vendors name a tap differently: some send the id we gave the button, some only its
# title (what the contact saw), some both; some report a list row as a button.
@pytest.mark.parametrize(
    "fields",
    [
        {"button_id": "Pagar agora"},
        {"button_id": "pagar agora", "text": "Pagar agora"},
        {"button_id": "Pagar agora", "text": "Pagar agora"},
        {"button_id": "wamid.HBgM-quick-reply", "text": "Pagar agora"},
    ],
)
async def test_a_tap_named_by_its_title_is_that_button(
    tmp_path: Path, fields: dict[str, str]
) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO)) as h:
        run = await h.start("boleto")
        await h.advance(timedelta(seconds=10))

        await h.event("button", **fields)

        # The contact tapped "Pagar agora": not handed to an attendant.
        assert [m.step for m in await h.messages(run.id)] == ["lembrete", "pagamento"]


async def test_a_tap_on_an_unknown_id_and_title_is_still_a_reply(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO)) as h:
        run = await h.start("boleto")
        await h.advance(timedelta(seconds=10))

        await h.event("button", button_id="outro", text="Outra coisa")

        assert [m.step for m in await h.messages(run.id)] == ["lembrete", "transferir"]


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("button", {"button_id": "nota_8"}),  # a row reported as a button
        ("choice", {"button_id": "8"}),  # a row named by its title
        ("button", {"button_id": "x", "text": "8"}),
    ],
)
async def test_a_list_row_however_the_vendor_names_it_is_that_row(
    tmp_path: Path, kind: str, fields: dict[str, str]
) -> None:
    async with harness(settings_with_flows(tmp_path, NOTA)) as h:
        run = await h.start("nota")
        await h.advance(timedelta(seconds=10))

        await h.event(kind, **fields)

        done = await h.run(run.id)
        assert (done.step, done.status) == ("oito", "completed")
        assert [m.step for m in await h.messages(run.id)] == ["pergunta"]


# Out of the 24 h window the approved template goes instead of the buttons. Its
# quick-reply buttons have no id disparo sent, so vendors report a tap on one by its
# title, and contacts type it: "Pagar agora" is the step's `pagar` button all the same.
BOLETO_TEMPLATE = """flow: boleto_tpl
defaults: {provider: sandbox}
triggers: [{api: {}}]
start: lembrete
steps:
  lembrete:
    send:
      text: Seu boleto vence amanhã.
      buttons: [{id: pagar, title: Pagar agora}, {id: ajuda, title: Falar com atendente}]
      template:
        name: boleto_vencendo
        params: {PrimeiroNome: "Maria", Valor: "R$ 10,00", Vencimento: "30/11"}
    rules: {window: template}
    on: {button.pagar: pagamento, reply: transferir}
  pagamento:
    send: {text: Pague com o Pix.}
    next: fim
  transferir:
    send: {text: Vou te passar para um atendente.}
    next: fim
  fim: {end: completed}
"""


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("button", {"button_id": "Pagar agora", "text": "Pagar agora"}),
        ("button", {"button_id": "Pagar agora"}),
        ("reply", {"text": "pagar agora"}),
        ("button", {"button_id": "pagar"}),  # a gateway that maps it to the step's id
    ],
)
async def test_a_template_quick_reply_named_by_its_title_is_the_steps_button(
    tmp_path: Path, kind: str, fields: dict[str, str]
) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO_TEMPLATE)) as h:
        run = await h.start("boleto_tpl")
        await h.advance(timedelta(seconds=10))
        assert (await h.messages(run.id))[0].payload["type"] == "template"

        await h.event(kind, **fields)

        assert [m.step for m in await h.messages(run.id)] == ["lembrete", "pagamento"]


async def test_other_words_under_a_template_are_still_a_reply(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, BOLETO_TEMPLATE)) as h:
        run = await h.start("boleto_tpl")
        await h.advance(timedelta(seconds=10))

        await h.event("button", button_id="Não reconheço", text="Não reconheço")

        assert [m.step for m in await h.messages(run.id)] == ["lembrete", "transferir"]


# Altu/Zenvia: the `id` of a button or list row is "the input that reaches the bot"
# (its document): the Altu bot receives a tap as the id in text, and can only pass
# it on as a reply. That reply is the tap.
@pytest.mark.parametrize(("flow", "said", "steps"), [
    (BOLETO, "pagar", ["lembrete", "pagamento"]),
    (NOTA, "nota_8", ["pergunta"]),
])  # fmt: skip
async def test_a_reply_that_is_a_buttons_id_is_that_button(
    tmp_path: Path, flow: str, said: str, steps: list[str]
) -> None:
    async with harness(settings_with_flows(tmp_path, flow)) as h:
        run = await h.start(flow.split("\n", 1)[0].removeprefix("flow: "))
        await h.advance(timedelta(seconds=10))

        await h.event("reply", text=said)

        assert [m.step for m in await h.messages(run.id)] == steps
        assert (await h.run(run.id)).status == "completed"
