"""What `disparo simulate` reads from a contact file and what `disparo why` prints:
the facts a designer gives are the facts the rules see, and each line of `why`
says when (local time), which run and step, and until when a send waits."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.engine_kit import harness, settings_for
from tests.integration.test_cli import CONFIG, ROOT, _local_config, disparo

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


def test_simulate_refuses_an_attendance_that_ends_before_it_starts(tmp_path: Path) -> None:
    # The API answers 400 for it: an attendance never on would let the bot talk over
    # the agent, and simulate must not show a run the engine would not have.
    path = tmp_path / "contato.yaml"
    path.write_text(
        'id: c-1\nphone: "+5511999998888"\nname: Maria Souza\n'
        'context: {valor: 1670, vencimento: "2026-11-30"}\n'
        'attendance: {since: "2026-11-23T09:30:00-03:00", until: "2026-11-23T09:00:00-03:00"}\n'
    )
    events = tmp_path / "eventos.jsonl"
    events.write_text(
        '{"at": "2026-11-23T10:30:00-03:00", "type": "attendance_started", '
        '"until": "2026-11-23T10:30:00-03:00"}\n'
    )
    by_file = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(path),
        "--at", AT,
    )  # fmt: skip
    path.write_text(path.read_text().rsplit("attendance:", 1)[0])
    by_event = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(path),
        "--events", str(events), "--at", AT,
    )  # fmt: skip

    assert by_file.returncode == by_event.returncode == 1
    assert "attendance.until" in by_file.stderr
    assert f"{events}:1: until" in by_event.stderr
    assert "is not after" in by_file.stderr
    assert "is not after" in by_event.stderr


MANAUS_FLOW = """\
flow: manaus
timezone: America/Manaus
defaults:
  provider: sandbox
  rules: {quiet_hours: "20:00-08:00"}
start: aviso
steps:
  aviso:
    send: {text: "Oi"}
    next: fim
  fim: {end: completed}
"""


async def test_why_reads_times_in_the_zone_the_rules_used_as_simulate_does(
    tmp_path: Path,
) -> None:
    # The config's zone is São Paulo, the flow's Manaus (an hour behind), and the
    # contact has none of its own: the rules run on Manaus time.
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "manaus.yaml").write_text(MANAUS_FLOW)
    config = _local_config(tmp_path)
    config.write_text(config.read_text().replace(f"flows: {ROOT / 'flows'}", f"flows: {flows}"))
    settings = settings_for(tmp_path, storage=f"sqlite:///{tmp_path / 'd.db'}", flows=flows)
    night = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)  # 21:30 in Manaus, 22:30 in São Paulo
    async with harness(settings, at=night) as h:
        await h.start("manaus")

    result = disparo("why", "c-1", "--config", str(config))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("times in America/Manaus")
    quiet = next(line for line in lines if "quiet_hours: defer" in line)
    # The same words as simulate's: deferred at 21:30 to 08:00, the end of the range.
    assert quiet.startswith("2026-11-23 21:30:00")
    assert "until 2026-11-24 08:00:00" in quiet


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
