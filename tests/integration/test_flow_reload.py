"""Reloading the flow files while serving: new runs take the new version, runs in
flight keep theirs, and a broken edit changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import FlowError, UserInputError
from engine.flows import Reloaded
from tests.integration.engine_kit import ROOT, Harness, harness, settings_for

FLOW = """\
flow: aviso
defaults:
  provider: sandbox
  rules:
    window: ignore
start: pergunta
steps:
  pergunta:
    send:
      text: "{question}"
    on:
      sent: espera
  espera:
    wait: {{for: reply, up_to: 24h}}
    on:
      reply: obrigado
      timeout: fim
  obrigado:
    send:
      text: "{thanks}"
    next: fim
  fim:
    end: completed
"""


def write_flow(flows: Path, question: str, thanks: str) -> None:
    """``aviso``: asks ``question``, waits for a reply, thanks with ``thanks``."""
    (flows / "aviso.yaml").write_text(FLOW.format(question=question, thanks=thanks))


async def _texts(h: Harness, run_id: str) -> list[str]:
    return [m.payload["body"] for m in await h.messages(run_id)]


async def test_new_runs_take_the_new_version_and_runs_in_flight_keep_theirs(
    tmp_path: Path,
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(flows, "Versão 1: tudo bem?", "Obrigado (v1)")
    async with harness(settings_for(tmp_path, flows=flows)) as h:
        old = await h.start("aviso", "c-1")
        write_flow(flows, "Versão 2: tudo certo?", "Obrigado (v2)")

        changed = await h.engine.reload_flows()
        new = await h.start("aviso", "c-2", phone="+5511988887777")
        for contact in ("c-1", "c-2"):
            await h.event("reply", contact, text="sim")

        assert changed == Reloaded(changed=["aviso"])
        assert await _texts(h, old.id) == ["Versão 1: tudo bem?", "Obrigado (v1)"]
        assert await _texts(h, new.id) == ["Versão 2: tudo certo?", "Obrigado (v2)"]
        assert (await h.run(old.id)).flow_version != (await h.run(new.id)).flow_version


async def test_a_broken_edit_changes_nothing_and_says_where(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(flows, "Versão 1", "Obrigado")
    async with harness(settings_for(tmp_path, flows=flows)) as h:
        (flows / "aviso.yaml").write_text(
            FLOW.format(question="Versão 2", thanks="Obrigado").replace("next: fim", "next: fin")
        )
        with pytest.raises(FlowError) as broken:
            await h.engine.reload_flows()
        run = await h.start("aviso", "c-1")

        assert "aviso.yaml:" in str(broken.value)
        assert "`fin`" in str(broken.value)
        assert await _texts(h, run.id) == ["Versão 1"]  # still the flow loaded before


async def test_added_and_removed_flows_are_told_apart(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(flows, "Versão 1", "Obrigado")
    async with harness(settings_for(tmp_path, flows=flows)) as h:
        (flows / "aviso.yaml").rename(flows / "lembrete.yaml")
        text = (flows / "lembrete.yaml").read_text().replace("flow: aviso", "flow: lembrete")
        (flows / "lembrete.yaml").write_text(text)

        changed = await h.engine.reload_flows()

        assert changed == Reloaded(added=["lembrete"], removed=["aviso"])
        assert changed.summary() == "added lembrete; removed aviso"
        assert Reloaded().summary() == "no flow changed"


TEMPLATE_FLOW = """\
flow: aviso
defaults: {provider: sandbox, rules: {window: ignore}}
start: aviso
steps:
  aviso:
    send:
      template: {name: novo_aviso, params: {Nome: "{{ contact.first_name }}"}}
    next: fim
  fim: {end: completed}
"""
NEW_TEMPLATE = """
  novo_aviso:
    params: [Nome]
    providers:
      sandbox: {id: novo_aviso_v1, language: pt_BR}
"""


async def test_a_template_added_to_the_catalogue_is_read_with_the_flows(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(flows, "Versão 1", "Obrigado")
    catalogue = tmp_path / "templates.yaml"
    catalogue.write_text((ROOT / "config" / "templates.yaml").read_text())
    async with harness(settings_for(tmp_path, flows=flows, templates=catalogue)) as h:
        (flows / "aviso.yaml").write_text(TEMPLATE_FLOW)
        with pytest.raises(UserInputError, match="novo_aviso"):  # not in the catalogue yet
            await h.engine.reload_flows()
        catalogue.write_text(catalogue.read_text() + NEW_TEMPLATE)

        changed = await h.engine.reload_flows()
        run = await h.start("aviso", "c-1")

        assert changed.changed == ["aviso"]
        (message,) = await h.messages(run.id)
        assert message.payload["name"] == "novo_aviso_v1"  # the provider's id for it
        assert message.payload["params"] == {"Nome": "Maria"}
