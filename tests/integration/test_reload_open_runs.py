"""What a reload (or a restart) means for the runs in flight: they keep their flow
version, but read the template catalogue and the providers as they are now. A
template parameter renamed under them fails their message with a pointed error
instead of sending values in the wrong places, and the operator is told at reload
and at start which open runs a change breaks."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from engine.flows import Reloaded
from engine.models import MessageStatus
from engine.serve import reload_flows, warn_open_runs
from tests.integration.engine_kit import harness, settings_for

FLOW = """\
flow: qa_tpl
defaults: {provider: sandbox, rules: {window: ignore}}
start: espera
steps:
  espera: {wait: 1h, next: aviso}
  aviso:
    send:
      template:
        name: boleto_vencendo
        params: {First: "{{ contact.first_name }}", Valor: "R$ 1.670,00", Vencimento: "30/11"}
    next: fim
  fim: {end: completed}
"""
CATALOGUE = """\
templates:
  boleto_vencendo:
    params: [First, Valor, Vencimento]
    providers:
      sandbox: {id: boleto_vencendo_v1, language: pt_BR}
  pesquisa:
    params: []
    providers:
      sandbox: {id: pesquisa_v1, language: pt_BR}
"""


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "qa_tpl.yaml").write_text(FLOW)
    catalogue = tmp_path / "templates.yaml"
    catalogue.write_text(CATALOGUE)
    return flows, catalogue


def _rename_first(flows: Path, catalogue: Path) -> None:
    """PrimeiroNome -> Nome, in the catalogue and the flow alike (`disparo check` ok)."""
    catalogue.write_text(CATALOGUE.replace("[First,", "[Nome,"))
    (flows / "qa_tpl.yaml").write_text(FLOW.replace("{First:", "{Nome:"))


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_renamed_parameter_fails_the_pinned_runs_message_instead_of_shuffling_it(
    tmp_path: Path,
) -> None:
    flows, catalogue = _setup(tmp_path)
    async with harness(settings_for(tmp_path, flows=flows, templates=catalogue)) as h:
        old = await h.start("qa_tpl", "c-1")
        _rename_first(flows, catalogue)
        await h.engine.reload_flows()
        new = await h.start("qa_tpl", "c-2", phone="+5511988887777")

        await h.advance(timedelta(hours=1))

        (failed,) = await h.messages(old.id)
        assert failed.status == MessageStatus.FAILED
        assert failed.last_error is not None
        assert failed.last_error.startswith(
            "template 'boleto_vencendo' takes the parameters Nome, Valor, Vencimento "
            f"({catalogue}) but step `aviso` of flow 'qa_tpl' gives First, Valor, Vencimento; "
            "nothing was sent rather than values in the wrong places. The run is pinned to "
            f"version {old.flow_version} of the flow, which predates this change"
        )
        (sent,) = await h.messages(new.id)  # the new version sends, in the catalogue's order
        assert sent.status != MessageStatus.FAILED
        assert sent.payload["params"] == {
            "Nome": "Maria",
            "Valor": "R$ 1.670,00",
            "Vencimento": "30/11",
        }


async def test_the_reload_names_the_open_runs_a_catalogue_change_breaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flows, catalogue = _setup(tmp_path)
    async with harness(settings_for(tmp_path, flows=flows, templates=catalogue)) as h:
        first = await h.start("qa_tpl", "c-1")
        await h.start("qa_tpl", "c-2", phone="+5511988887777")
        # The template is withdrawn: the flow stops using it, the catalogue drops it.
        (flows / "qa_tpl.yaml").write_text(
            FLOW.replace("name: boleto_vencendo", "name: pesquisa").replace(
                '{First: "{{ contact.first_name }}", Valor: "R$ 1.670,00", Vencimento: "30/11"}',
                "{}",
            )
        )
        catalogue.write_text(
            "templates:\n  pesquisa:\n    params: []\n    providers:\n"
            "      sandbox: {id: pesquisa_v1, language: pt_BR}\n"
        )
        caplog.set_level(logging.INFO)

        await reload_flows(h.engine)

        assert (
            "reloaded the flow files and the template catalogue: changed qa_tpl; templates: "
            "removed boleto_vencendo; runs in flight go on with the flow version they started "
            "with and send the templates as the catalogue says now"
        ) in _lines(caplog, logging.INFO)
        (error,) = _lines(caplog, logging.ERROR)
        assert error.startswith(
            f"2 open runs of qa_tpl (version {first.flow_version}), pinned to the version they "
            "started with, will fail at step `aviso`: template `boleto_vencendo` is not in the "
            "template catalogue"
        )
        assert "(line 9 of that version)" in error
        assert error.endswith("restore what that version uses, or cancel those runs")


async def test_a_renamed_provider_instance_is_named_at_start_for_the_runs_it_breaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flows, catalogue = _setup(tmp_path)
    async with harness(settings_for(tmp_path, flows=flows, templates=catalogue)) as h:
        run = await h.start("qa_tpl", "c-1")
    # Restarted with the sandbox renamed (flow and catalogue follow the new name).
    (flows / "qa_tpl.yaml").write_text(FLOW.replace("provider: sandbox", "provider: caixa"))
    catalogue.write_text(CATALOGUE.replace("sandbox:", "caixa:"))
    settings = settings_for(tmp_path, flows=flows, templates=catalogue)
    providers = dict(settings.providers)
    providers["caixa"] = providers.pop("sandbox")
    settings = settings.model_copy(update={"providers": providers})
    async with harness(settings) as h:
        caplog.set_level(logging.INFO)

        await warn_open_runs(h.engine)

    errors = _lines(caplog, logging.ERROR)
    who = f"1 open run of qa_tpl (version {run.flow_version}), pinned to the version"
    assert any(e.startswith(who) and "`sandbox`" in e for e in errors), errors
    assert any("template `boleto_vencendo` has no id for provider `sandbox`" in e for e in errors)
    assert f"under its `providers:` in {catalogue}" in " ".join(errors)


async def test_a_removed_flow_is_a_warning_with_its_open_runs_at_reload_and_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flows, catalogue = _setup(tmp_path)
    settings = settings_for(tmp_path, flows=flows, templates=catalogue)
    async with harness(settings) as h:
        await h.start("qa_tpl", "c-1")
        await h.start("qa_tpl", "c-2", phone="+5511988887777")
        (flows / "qa_tpl.yaml").unlink()
        caplog.set_level(logging.INFO)

        await reload_flows(h.engine)

    assert _lines(caplog, logging.WARNING) == [
        "the reload removed flow qa_tpl (no flow file defines it now): 2 open runs of it go "
        "on with the version they started with; no new run of it starts. Put its file back "
        "to start it again"
    ]
    assert not _lines(caplog, logging.ERROR)  # their version still fits the catalogue
    caplog.clear()
    async with harness(settings) as h:
        await warn_open_runs(h.engine)  # what `disparo serve` does at start
    assert _lines(caplog, logging.WARNING) == [
        "flow qa_tpl is not loaded (no flow file defines it): 2 open runs of it go on with "
        "the version they started with; no new run of it starts. Put its file back to start "
        "it again"
    ]


async def test_a_catalogue_only_edit_is_in_the_reload_summary(tmp_path: Path) -> None:
    flows, catalogue = _setup(tmp_path)
    async with harness(settings_for(tmp_path, flows=flows, templates=catalogue)) as h:
        catalogue.write_text(
            CATALOGUE.replace("pesquisa_v1", "pesquisa_v2")
            + "  novo:\n    providers:\n      sandbox: {id: novo_v1}\n"
        )

        changed = await h.engine.reload_flows()

    assert changed == Reloaded(templates_added=["novo"], templates_changed=["pesquisa"])
    assert changed.summary() == "no flow changed; templates: added novo; changed pesquisa"


async def test_a_removed_template_fails_the_message_naming_the_configured_catalogue(
    tmp_path: Path,
) -> None:
    flows, catalogue = _setup(tmp_path)
    async with harness(settings_for(tmp_path, flows=flows, templates=catalogue)) as h:
        run = await h.start("qa_tpl", "c-1")
        (flows / "qa_tpl.yaml").write_text(FLOW.replace("name: boleto_vencendo", "name: outro"))
        catalogue.write_text(CATALOGUE.replace("boleto_vencendo", "outro"))
        await h.engine.reload_flows()

        await h.advance(timedelta(hours=1))

        (failed,) = await h.messages(run.id)
        assert failed.status == MessageStatus.FAILED
        assert failed.last_error == (
            "template 'boleto_vencendo' has no id for provider 'sandbox' in the template "
            f"catalogue; add it to {catalogue}. The run is pinned to version "
            f"{run.flow_version} of the flow, which predates this change to the template "
            "catalogue; restore the template's old entry for the runs still on that version, "
            "or cancel them"
        )
