"""A message that cannot render fails with an error naming the flow, step,
field and kind of value; the contact's CPF, phone and e-mail are in none of the
places that error goes: the log, the stored events, `disparo why` and the API."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.models import ContactUpsert
from engine.why_text import why_lines
from tests.integration.engine_kit import harness, settings_with_flows
from tests.integration.openapi_conformance import checked_client
from tests.integration.test_api import AUTH

CPF = "529.982.247-25"
PHONE = "+5511987650002"
EMAIL = "titular.privado@example.com"
FLOW = """\
flow: cadastro
defaults: {provider: sandbox, rules: {window: ignore}}
start: aviso
steps:
  aviso:
    send:
      text: "Seu saldo: {{ context.cpf | brl }} ({{ context.contatos.index(contact.email) }})"
    next: fim
  fim: {end: completed}
"""


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{ context.cpf | brl }}", "`brl` needs a number, got a string that is not one"),
        ("{{ context.contatos.index(contact.email) }}", "… is not in list"),
    ],
)
async def test_a_render_error_keeps_the_contacts_data_out_of_logs_events_and_api(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, says: str
) -> None:
    flow = FLOW.replace(
        '"Seu saldo: {{ context.cpf | brl }} ({{ context.contatos.index(contact.email) }})"',
        f'"{text}"',
    )
    async with harness(settings_with_flows(tmp_path, flow)) as h:
        async with checked_client(h.engine) as client:
            with caplog.at_level(logging.INFO):
                run, _ = await h.engine.start_run(
                    "cadastro",
                    ContactUpsert(id="c-1", phone=PHONE, email=EMAIL),
                    context={"cpf": CPF, "contatos": [PHONE]},
                )
                await h.engine.settle()
            answer = await client.get(f"/v1/runs/{run.id}", headers=AUTH)
            assert answer.status == 200, await answer.text()
            view = await answer.json()
        events = await h.engine.store.list_events(run_id=run.id, limit=1000)
        stored = "\n".join(m.last_error or "" for m in await h.messages(run.id))

    # The run's own data (its vars) is what the API shows on purpose; its errors are not.
    api = json.dumps([view["messages"], view["history"]], ensure_ascii=False)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    data = json.dumps([e.data for e in events], ensure_ascii=False)
    why = why_lines(events, ZoneInfo("America/Sao_Paulo"))
    said = "\n".join([logged, stored, api, data, *why])
    assert f"cadastro/aviso/send.text: line 1: {says}" in stored
    assert says in api
    assert says in logged
    assert [s for s in (CPF, PHONE, EMAIL) if s in said] == []
