"""The context a run is started with is the run's own: two boletos of one contact
(a flow with `concurrency: many`) each show their own amount, in every message of
the run, however the other run changed the contact's stored context meanwhile."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.bulk import trigger
from tests.integration.engine_kit import Harness, harness, settings_with_flows

FLOW = """\
flow: boletos
concurrency: many
defaults: {provider: sandbox, rules: {window: ignore}}
start: lembrete
steps:
  lembrete:
    send:
      text: "Boleto de {{ context.valor | brl }} vence em {{ context.vencimento | date('%d/%m') }}"
    on: {sent: espera}
  espera:
    wait: 1h
    next: multa
  multa:
    set: {context.valor: "{{ context.valor + 10 }}"}
    next: aviso
  aviso:
    send: {text: "Com multa: {{ context.valor | brl }}"}
    next: fim
  fim: {end: completed}
"""


async def texts(h: Harness, run_id: str) -> list[str]:
    return [m.payload["body"] for m in await h.messages(run_id)]


async def test_two_runs_of_one_contact_keep_their_own_amounts(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        a = await h.start("boletos", context={"valor": 100, "vencimento": "2026-12-10"})
        b = await h.start("boletos", context={"valor": 2500, "vencimento": "2026-12-20"})
        await h.advance(timedelta(hours=1, minutes=1))

        assert await texts(h, a.id) == [
            "Boleto de R$ 100,00 vence em 10/12",
            "Com multa: R$ 110,00",
        ]
        assert await texts(h, b.id) == [
            "Boleto de R$ 2.500,00 vence em 20/12",
            "Com multa: R$ 2.510,00",
        ]
        # The contact's stored context holds what was written last, for other flows.
        contact = await h.engine.get_contact("c-1")
        assert contact.context["valor"] in (110, 2510)


async def test_csv_rows_of_one_contact_in_two_files_keep_their_own_amounts(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        for name, valor in (("marco.csv", "100"), ("abril.csv", "2500")):
            path = tmp_path / name
            path.write_text(
                "id,phone,valor:number,vencimento\n"
                f"c-1,+5511999998888,{valor},2026-12-{10 if valor == '100' else 20}\n"
            )
            await trigger(h.engine, "boletos", path, name=name, progress=False)
        await h.advance(timedelta(seconds=6))

        runs = await h.engine.store.list_contact_runs("c-1")
        bodies = sorted([body for run in runs for body in await texts(h, run.id)])
        assert bodies == [
            "Boleto de R$ 100,00 vence em 10/12",
            "Boleto de R$ 2.500,00 vence em 20/12",
        ]
