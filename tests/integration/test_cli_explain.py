"""What `disparo simulate` reads from a contact file and what `disparo why` prints:
the facts a designer gives are the facts the rules see, and each line of `why`
says when (local time), which run and step, and until when a send waits."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from tests.integration.engine_kit import harness, settings_for
from tests.integration.test_cli import CONFIG, _local_config, disparo

AT = "2026-11-23T10:00:00-03:00"


def simulate(tmp_path: Path, contact: str) -> list[dict[str, object]]:
    path = tmp_path / "contato.yaml"
    path.write_text(
        'id: c-1\nphone: "+5511999998888"\nname: Maria Souza\n'
        'context: {valor: 1670, vencimento: "2026-11-30"}\n' + contact
    )
    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(path),
        "--at", AT, "--until", "2026-11-23T12:00:00-03:00", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def decisions(lines: list[dict[str, object]], rule: str) -> list[tuple[object, ...]]:
    return [
        (line["outcome"], line["reason"], line.get("until"))
        for line in lines
        if line["kind"] == "decision" and line["rule"] == rule
    ]


def test_simulate_counts_the_last_outbound_of_the_contact_file(tmp_path: Path) -> None:
    lines = simulate(tmp_path, 'last_outbound_at: "2026-11-23T09:00:00-03:00"\n')

    # cobranca_boleto skips within 4 h of any other outbound: one went an hour ago.
    assert decisions(lines, "recent_contact")[0][:2] == ("skip", "contacted_recently")
    assert not [line for line in lines if line["kind"] == "send"]


def test_simulate_keeps_the_attendance_end_and_attendant_of_the_contact_file(
    tmp_path: Path,
) -> None:
    lines = simulate(
        tmp_path,
        "attendance:\n"
        '  since: "2026-11-23T09:30:00-03:00"\n'
        '  until: "2026-11-23T10:30:00-03:00"\n'
        "  attendant: Operador\n",
    )

    # in_attendance: skip in cobranca_boleto; the facts say who and until when.
    (first, *_) = [
        line for line in lines if line["kind"] == "decision" and line["rule"] == "in_attendance"
    ]
    assert first["outcome"] == "skip"
    facts = first["facts"]
    assert isinstance(facts, dict)
    assert facts["attendant"] == "Operador"
    assert facts["attendance_until"] == "2026-11-23T13:30:00+00:00"


async def test_why_names_the_local_time_the_run_and_the_step(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    settings = settings_for(tmp_path, storage=f"sqlite:///{tmp_path / 'd.db'}")
    async with harness(settings) as h:  # 10:00 in São Paulo
        run = await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        await h.advance(timedelta(seconds=6))

    result = disparo("why", "c-1", "--config", str(config))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "# newest recorded first (a late event shows where it arrived); times in America/Sao_Paulo"
    )
    window = next(line for line in lines if "window: template" in line)
    assert re.match(rf"2026-11-23 10:00:00  run {run.id[:8]}  lembrete +decision ", window)

    misspelt = disparo("why", "c-1", "--flow", "cobranca", "--config", str(config))

    assert misspelt.returncode == 1
    assert "flow 'cobranca' is not loaded; loaded flows: cobranca_boleto" in misspelt.stderr


def test_simulate_says_when_it_stops_before_the_run_ends(tmp_path: Path) -> None:
    path = tmp_path / "contato.yaml"
    path.write_text('id: c-1\nphone: "+5511999998888"\nname: Maria\n'
                    'context: {valor: 1670, vencimento: "2026-11-30"}\n')  # fmt: skip

    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(path),
        "--at", AT, "--until", "2026-11-23T10:30:00-03:00",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "# the run is still waiting at step `lembrete` at 2026-11-23 10:30:00, "
        "where the simulation stops (--until)"
    )


async def test_why_says_when_limit_cut_the_history_short(tmp_path: Path) -> None:
    # 50 lines and nothing more: the support agent took them for the whole story.
    config = _local_config(tmp_path)
    settings = settings_for(tmp_path, storage=f"sqlite:///{tmp_path / 'd.db'}")
    async with harness(settings) as h:
        await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        await h.advance(timedelta(seconds=6))

    cut = disparo("why", "c-1", "--limit", "3", "--config", str(config))
    whole = disparo("why", "c-1", "--config", str(config))

    assert cut.returncode == 0, cut.stderr
    assert len([line for line in cut.stdout.splitlines() if not line.startswith("#")]) == 3
    assert cut.stdout.splitlines()[-1] == "# the newest 3 events; older ones exist: --limit N"
    assert "older ones exist" not in whole.stdout
