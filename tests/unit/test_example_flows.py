"""The flows in flows/ are what bot designers copy: they must be clean and consistent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.errors import FlowError
from engine.flow.loader import load_flow, load_flow_text, load_flows
from engine.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
FLOWS = REPO / "flows"
EXAMPLES = sorted(FLOWS.glob("*.yaml"))


def test_the_three_documented_examples_are_there() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"cobranca_boleto", "pesquisa_nps", "reengajamento_23h"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_loads_with_zero_problems_against_the_shipped_config(path: Path) -> None:
    settings = load_settings(REPO / "config" / "disparo.yaml", {})
    loaded = load_flow(path, providers=settings.providers)
    assert loaded.flow.flow == path.stem
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=./flow.schema.json"


def test_load_flows_serves_every_example_by_name() -> None:
    assert sorted(load_flows(FLOWS)) == sorted(p.stem for p in EXAMPLES)


def test_every_template_a_flow_sends_is_in_the_catalogue_with_its_params() -> None:
    catalogue = yaml.safe_load((REPO / "config" / "templates.yaml").read_text())["templates"]
    used = 0
    for loaded in load_flows(FLOWS).values():
        for sid, step in loaded.flow.steps.items():
            template = step.send.template if step.send else None
            if template is None:
                continue
            used += 1
            assert template.name in catalogue, f"{loaded.flow.flow}/{sid}: {template.name}"
            entry = catalogue[template.name]
            assert list(template.params) == entry["params"]
            assert set(entry["providers"]) <= set(
                load_settings(REPO / "config" / "disparo.yaml", {}).providers
            )
    assert used >= 1


def test_the_boleto_reminder_follows_up_by_sms_when_not_read_in_two_hours() -> None:
    flow = load_flows(FLOWS)["cobranca_boleto"].flow
    lembrete = flow.steps["lembrete"]
    assert lembrete.timeout is not None
    assert (lembrete.timeout.after, lembrete.timeout.goto) == ("2h", "sms")
    assert flow.channel_for("sms") == "sms"
    assert flow.rules_for("lembrete").window == "template"
    assert lembrete.send is not None
    assert lembrete.send.template is not None
    assert [b.id for b in lembrete.send.buttons or []] == ["pagar", "ajuda"]


def test_the_nps_survey_fits_whatsapp_lists_and_stores_every_score() -> None:
    flow = load_flows(FLOWS)["pesquisa_nps"].flow
    send = flow.steps["pergunta"].send
    assert send is not None
    assert send.list_ is not None
    rows = [row.id for section in send.list_.sections for row in section.rows]
    assert len(rows) <= 10  # WhatsApp allows 10 rows in a list
    waiting = flow.steps["aguardando_nota"].on or {}
    scores = []
    for row in rows:
        target = flow.steps[waiting[f"choice.{row}"]]
        assert target.set_ is not None
        scores.append(target.set_["context.nps_nota"])
    assert sorted(scores) == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_the_re_engagement_runs_23_hours_after_the_last_inbound_and_by_hand() -> None:
    flow = load_flows(FLOWS)["reengajamento_23h"].flow
    kinds = {type(t).__name__: t for t in flow.triggers}
    assert set(kinds) == {"AfterTrigger", "ApiTrigger"}
    after = kinds["AfterTrigger"]
    assert (after.after, after.since) == ("23h", "last_inbound")  # type: ignore[union-attr]


def test_the_readme_typo_example_gives_the_line_it_shows() -> None:
    text = (FLOWS / "cobranca_boleto.yaml").read_text(encoding="utf-8")
    with pytest.raises(FlowError) as caught:
        load_flow_text(text.replace("buttons:", "buttns:"), "flows/cobranca_boleto.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "flows/cobranca_boleto.yaml:24:7: unknown key `buttns` in step `lembrete`; "
        "did you mean `buttons`?"
    ]
