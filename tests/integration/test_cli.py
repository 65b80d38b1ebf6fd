"""The `disparo` commands as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "disparo.yaml"


def disparo(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def maria(tmp_path: Path) -> Path:
    path = tmp_path / "maria.yaml"
    path.write_text(
        "id: c-1\n"
        'phone: "+5511999998888"\n'
        "name: Maria Souza\n"
        'context: {valor: 1670, vencimento: "2026-11-30"}\n'
        'last_inbound_at: "2026-11-23T09:00:00-03:00"\n'
    )
    return path


def test_check_passes_the_example_flows() -> None:
    result = disparo("check", "--config", str(CONFIG))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_check_given_the_config_file_checks_it_as_the_config_not_as_a_flow() -> None:
    result = disparo("check", "config/disparo.yaml", "config/templates.yaml", "flows")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""  # no "unknown key `providers`" as if it were a flow
    assert result.stderr.strip() == "ok"


def test_check_points_at_the_misspelled_key(tmp_path: Path) -> None:
    source = (ROOT / "flows" / "cobranca_boleto.yaml").read_text()
    broken = tmp_path / "cobranca_boleto.yaml"
    broken.write_text(source.replace("      buttons:", "      buttns:", 1))
    line = next(i for i, text in enumerate(broken.read_text().splitlines(), 1) if "buttns" in text)

    result = disparo("check", "--config", str(CONFIG), str(broken))

    assert result.returncode == 1
    assert result.stdout.startswith(f"{broken}:{line}:7: unknown key `buttns`")
    assert "did you mean `buttons`?" in result.stdout


def test_check_of_a_folder_without_flow_files_is_not_all_clear(tmp_path: Path) -> None:
    (tmp_path / "notas.txt").write_text("oi")

    result = disparo("check", str(tmp_path), "--config", str(CONFIG))

    assert result.returncode == 1
    assert result.stdout == f"{tmp_path}: no flow files (*.yaml, *.yml) here\n"


def test_check_reports_every_problem_in_one_pass(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "flow: f\n"
        "start: a\n"
        "defaults: {provider: sandbox}\n"
        "steps:\n"
        "  a: {send: {text: 'Oi {{ contact.name }'}, next: b}\n"
        "  b: {send: {text: oi, provider: sandbx}, next: fim}\n"
        "  orfao: {end: completed}\n"
    )

    result = disparo("check", "--config", str(CONFIG), str(flow))

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(":6:" in x and "sandbx" in x and "did you mean `sandbox`" in x for x in lines)
    assert any("`fim`" in x for x in lines)
    assert any("orfao" in x and "never reached" in x for x in lines)
    assert "4 problems" in result.stderr
    assert any(":5:" in x and "does not compile" in x for x in lines)


def test_simulate_json_prints_one_object_per_thing_that_happens(maria: Path) -> None:
    result = disparo(
        "simulate",
        "cobranca_boleto",
        "--config",
        str(CONFIG),
        "--contact",
        str(maria),
        "--at",
        "2026-11-23T10:00:00-03:00",
        "--json",
    )

    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    kinds = [x["kind"] for x in lines]
    assert kinds[0] == "enter"
    assert kinds[-1] == "end"
    assert lines[-1]["status"] == "completed"
    # The reply was an hour ago: the window is open but inactivity (10 min) passes.
    sends = [x for x in lines if x["kind"] == "send"]
    assert [s["step"] for s in sends] == ["lembrete", "sms"]
    assert sends[0]["payload"]["content"]["type"] == "buttons"
    assert sends[0]["provider"] == "sandbox"
    assert sends[1]["channel"] == "sms"
    timer = next(x for x in lines if x["kind"] == "timer")
    assert timer["at"].startswith("2026-11-23T15:00:00")  # 2 h later, not read
    # Every line names the step the run was at, the end and events included.
    assert lines[-1]["step"] == "fim"
    assert all(list(x)[:3] == ["at", "kind", "step"] for x in lines)
    for decision in (x for x in lines if x["kind"] == "decision"):
        assert {"rule", "outcome", "reason", "step"} <= decision.keys()


def test_simulate_with_a_read_receipt_takes_the_other_path(maria: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"at": "2026-11-23T10:30:00-03:00", "type": "status", "status": "read"}\n'
        '{"at": "2026-11-23T10:31:00-03:00", "type": "button", "button_id": "ajuda"}\n'
    )

    result = disparo(
        "simulate",
        "cobranca_boleto",
        "--config",
        str(CONFIG),
        "--contact",
        str(maria),
        "--at",
        "2026-11-23T10:00:00-03:00",
        "--events",
        str(events),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    entered = [x["step"] for x in lines if x["kind"] == "enter"]
    assert entered[:3] == ["lembrete", "aguardando_resposta", "transferir"]
    assert "sms" not in entered


def test_graph_draws_every_step_and_edge() -> None:
    mermaid = disparo("graph", "cobranca_boleto", "--config", str(CONFIG))
    dot = disparo("graph", "cobranca_boleto", "--config", str(CONFIG), "--format", "dot")

    assert mermaid.returncode == dot.returncode == 0
    assert mermaid.stdout.startswith("flowchart")
    for step in ("lembrete", "sms", "aguardando_resposta", "pagamento", "fim"):
        assert step in mermaid.stdout
        assert step in dot.stdout
    assert "digraph" in dot.stdout


def test_schema_prints_the_committed_schema() -> None:
    result = disparo("schema")

    assert result.returncode == 0
    committed = json.loads((ROOT / "flows" / "flow.schema.json").read_text())
    assert json.loads(result.stdout) == committed


def _local_config(tmp_path: Path) -> Path:
    """The shipped config on a database under ``tmp_path`` (flows and templates of the repo)."""
    config = tmp_path / "disparo.yaml"
    config.write_text(
        CONFIG.read_text()
        .replace("sqlite:///var/disparo.db", f"sqlite:///{tmp_path / 'd.db'}")
        .replace("flows: flows/", f"flows: {ROOT / 'flows'}")
        .replace("templates: config/templates.yaml", f"templates: {ROOT / 'config/templates.yaml'}")
    )
    return config


def test_migrate_then_why_on_a_fresh_database(tmp_path: Path) -> None:
    config = _local_config(tmp_path)

    first = disparo("migrate", "--config", str(config))
    again = disparo("migrate", "--config", str(config))
    why = disparo("why", "nobody", "--config", str(config))

    assert first.returncode == 0, first.stderr
    assert (
        ": 0001_initial, 0002_triggers, 0003_provider_state, "
        "0004_retention, 0005_erasure, 0006_ambiguous, 0007_sending, 0008_claim_order, "
        "0009_event_contacts" in first.stdout
    )
    assert "up to date" in again.stdout
    assert why.returncode == 1
    assert "contact nobody does not exist" in why.stderr


@pytest.mark.parametrize("limit", ["0", "-3", "99999999999999999999999", "dez"])
def test_a_why_limit_that_is_not_a_count_is_a_usage_error(limit: str) -> None:
    # `--limit 0` answered "no events for contact", and a huge one a traceback.
    why = disparo("why", "c-1", "--limit", limit)

    assert why.returncode == 2
    assert "Traceback" not in why.stderr
    assert f"--limit: {limit!r} is not a number of events; give 1 to 1000000" in why.stderr


async def _finished_runs(database: Path, *days_ago: int, status: str = "completed") -> None:
    """Runs of contact c-1 in ``database``, one per age (``days_ago``), each with
    ``status`` and, when open, a timer that came due five minutes ago."""
    from engine.models import ContactUpsert, DueKind, NewDueWork, RunStatus
    from storage.base import Commit, NewRun
    from storage.sqlite import SQLiteStore

    store = SQLiteStore(str(database))
    await store.open()
    now = datetime.now(UTC)
    await store.upsert_contact(ContactUpsert(id="c-1", phone="+5511999998888"), now)
    for n, days in enumerate(days_ago):
        run = NewRun(
            id=f"r-{n}",
            flow="cobranca_boleto",
            flow_version="v1",
            contact_id="c-1",
            step="fim",
            status=RunStatus(status),
            idempotency_key=f"k-{n}",
            exclusive=False,
        )
        late = NewDueWork(kind=DueKind.TIMER, due_at=now - timedelta(minutes=5), run_id=run.id)
        timers = [late] if status in ("active", "waiting") else []
        await store.commit(Commit(now=now - timedelta(days=days), new_run=run, new_due=timers))
    await store.close()


async def test_purge_deletes_what_finished_before_keep_and_says_what(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    assert disparo("migrate", "--config", str(config)).returncode == 0
    await _finished_runs(tmp_path / "d.db", 40, 31, 10)

    preview = disparo("purge", "--dry-run", "--config", str(config))
    default = disparo("purge", "--config", str(config))  # retention.keep: 30d by default
    shorter = disparo("purge", "--keep", "5d", "--config", str(config))
    too_short = disparo("purge", "--keep", "1d", "--config", str(config))
    not_a_duration = disparo("purge", "--keep", "um mes", "--config", str(config))
    text = config.read_text()
    assert "retention: {keep: 30d, every: 10m}" in text
    config.write_text(text.replace("keep: 30d", "keep: null"))
    off = disparo("purge", "--config", str(config))

    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.startswith(
        "would delete 2 finished runs, 0 messages, 0 events, 0 unmatched status reports and "
        "0 cron firings from before "
    )
    assert "batch" not in preview.stdout
    assert default.returncode == 0, default.stderr
    assert default.stdout.startswith(
        "deleted 2 finished runs, 0 messages, 0 events, 0 unmatched status reports and "
        "0 cron firings from before "
    )
    assert default.stdout.rstrip().endswith("(1 batch)")
    assert shorter.stdout.startswith("deleted 1 finished run, 0 messages, ")
    # a flag the command cannot take is a usage error, as `why --limit 0` is
    assert too_short.returncode == 2
    assert too_short.stderr.strip() == (
        "--keep: keep at least 2d (the max_per_day rule counts a whole local day of "
        "messages), or null to keep everything"
    )
    assert not_a_duration.returncode == 2
    assert not_a_duration.stderr.startswith("--keep: 'um mes' is not a duration")
    assert off.returncode == 0
    assert off.stdout.startswith("retention is off (retention.keep: null): nothing deleted")


def test_serving_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    config = _local_config(tmp_path)

    result = disparo("why", "c-1", "--config", str(config))

    assert result.returncode == 3
    assert "disparo migrate" in result.stderr


def test_a_bad_config_is_an_input_error_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "disparo.yaml"
    config.write_text(CONFIG.read_text().replace("timezone: America/Sao_Paulo", "timezon: UTC"))

    result = disparo("check", "--config", str(config))

    assert result.returncode == 1
    assert f"{config}:" in result.stdout
    assert "timezon" in result.stdout


def test_log_format_is_accepted_before_or_after_the_command() -> None:
    after = disparo("check", "--log-format", "json", "--config", str(CONFIG))
    before = disparo("--log-format", "json", "check", "--config", str(CONFIG))
    wrong = disparo("check", "--log-format", "xml", "--config", str(CONFIG))

    assert (after.returncode, before.returncode) == (0, 0)
    assert wrong.returncode == 2
    assert "invalid choice: 'xml'" in wrong.stderr


@pytest.mark.parametrize(
    ("contact", "events", "expected"),
    [
        ("missing.yaml", None, "missing.yaml: no such file"),
        ("contact.yaml", None, "contact.yaml:2:19: a quote or bracket opened here is never closed"),
        ("maria", "missing.jsonl", "missing.jsonl: no such file (the events file)"),
        ("maria", "events.jsonl", "events.jsonl:2: every event needs `at` and `type`"),
    ],
)
def test_simulate_points_at_a_bad_contact_or_events_file_without_a_traceback(
    maria: Path, tmp_path: Path, contact: str, events: str | None, expected: str
) -> None:
    (tmp_path / "contact.yaml").write_text("id: c-1\ncontext: {pedido: [1, 2\n")
    (tmp_path / "events.jsonl").write_text(
        '{"at": "2026-11-23T10:30:00-03:00", "type": "status", "status": "read"}\n[1, 2]\n'
    )
    contact_path = maria if contact == "maria" else tmp_path / contact
    args = ["simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(contact_path)]
    if events is not None:
        args += ["--events", str(tmp_path / events)]

    result = disparo(*args)

    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    # `disparo schema | head -1`: the reader is gone before disparo writes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "schema"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()

    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr
    assert "BrokenPipe" not in stderr


def test_simulate_text_shows_times_in_the_runs_time_zone(maria: Path, tmp_path: Path) -> None:
    manaus = tmp_path / "manaus.yaml"
    manaus.write_text(maria.read_text() + "timezone: America/Manaus\n")
    at = ["--at", "2026-11-23T10:00:00-03:00", "--config", str(CONFIG)]

    in_sao_paulo = disparo("simulate", "cobranca_boleto", "--contact", str(maria), *at)
    in_manaus = disparo("simulate", "cobranca_boleto", "--contact", str(manaus), *at)

    assert in_sao_paulo.returncode == 0, in_sao_paulo.stderr
    assert in_manaus.returncode == 0, in_manaus.stderr
    first, second = in_sao_paulo.stdout.splitlines()[:2]
    assert first.startswith("# times in America/Sao_Paulo")
    assert second.startswith("2026-11-23 10:00:00  enter     lembrete")
    # The 2 h timeout that sends the SMS, in local time.
    assert "2026-11-23 12:00:00  enter     sms" in in_sao_paulo.stdout
    assert in_manaus.stdout.splitlines()[0].startswith("# times in America/Manaus")
    assert "2026-11-23 09:00:00  enter     lembrete" in in_manaus.stdout


async def test_erase_needs_yes_then_deletes_each_contact_and_says_what(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    assert disparo("migrate", "--config", str(config)).returncode == 0
    await _finished_runs(tmp_path / "d.db", 3, 1)

    unconfirmed = disparo("erase", "c-1", "--config", str(config))
    confirmed = disparo("erase", "c-1", "nobody", "c-1", "--yes", "--config", str(config))
    again = disparo("erase", "c-1", "--yes", "--config", str(config))

    assert unconfirmed.returncode == 2  # a usage error: nothing was tried
    assert unconfirmed.stderr.strip() == (
        "erasing deletes contact c-1 and every run, message and event of theirs for good; "
        "add --yes to go ahead"
    )
    # Every contact named is tried; one that does not exist fails the command.
    assert confirmed.returncode == 1
    assert confirmed.stdout.strip() == (
        "erased contact c-1: 2 runs, 0 messages, 0 events, 0 due work, 0 unmatched status reports"
    )
    assert "contact nobody does not exist (nothing to erase)" in confirmed.stderr
    assert "erased contact c-1 (asked through disparo erase)" in confirmed.stderr
    assert again.returncode == 1
    assert again.stderr.strip() == "contact c-1 does not exist (nothing to erase)"


async def test_export_prints_the_contact_and_every_run_as_json(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    assert disparo("migrate", "--config", str(config)).returncode == 0
    await _finished_runs(tmp_path / "d.db", 3, 1)

    exported = disparo("export", "c-1", "--config", str(config))
    unknown = disparo("export", "nobody", "--config", str(config))

    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["contact"]["phone"] == "+5511999998888"
    assert [run["id"] for run in document["runs"]] == ["r-0", "r-1"]  # oldest first
    assert "exported the data of contact c-1 (asked through disparo export)" in exported.stderr
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "contact nobody does not exist"


async def test_status_shows_due_work_open_runs_and_ambiguous_messages(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    empty = disparo("status", "--config", str(config))  # not migrated yet
    assert disparo("migrate", "--config", str(config)).returncode == 0
    await _finished_runs(tmp_path / "d.db", 0, status="waiting")

    text = disparo("status", "--config", str(config))
    as_json = disparo("status", "--json", "--config", str(config))

    assert empty.returncode == 3
    assert "disparo migrate" in empty.stderr
    assert text.returncode == 0, text.stderr
    assert "  timer             1        0        0  5 min ago" in text.stdout
    assert "  cobranca_boleto         1" in text.stdout
    assert "ambiguous messages: 0" in text.stdout
    document = json.loads(as_json.stdout)
    assert document["due_work"]["timer"]["due"] == 1
    assert document["open_runs"] == {"cobranca_boleto": 1}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"type": "botao", "button_id": "pagar"}', "events.jsonl:1: unknown event type 'botao'"),
        ('{"type": "status", "status": "lido"}', "events.jsonl:1: a status event needs `status`"),
        ('{"type": "button"}', "events.jsonl:1: a button event needs `button_id`"),
        (
            '{"type": "reply", "text": "Pagar agora", "button_id": "pagar"}',
            "events.jsonl:1: `button_id` does not apply to type reply, only to button or choice",
        ),
        (
            '{"type": "reply", "contact": "c-999", "text": "Sim"}',
            "events.jsonl:1: `contact` names contact 'c-999', but the simulated contact is 'c-1'",
        ),
        (
            '{"type": "reply", "contact": {"phone": "+5511977776666"}, "text": "Sim"}',
            "events.jsonl:1: `contact` names phone +55*******6666, but the simulated contact",
        ),
    ],
)
def test_simulate_names_an_event_it_cannot_use(
    maria: Path, tmp_path: Path, line: str, expected: str
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(line.replace("{", '{"at": "2026-11-23T10:30:00-03:00", ', 1) + "\n")

    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG),
        "--contact", str(maria), "--events", str(events), "--at", "2026-11-23T10:00:00-03:00",
    )  # fmt: skip

    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("named", ['"c-1"', '{"id": "c-1"}', '{"phone": "(11) 99999-8888"}'])
def test_simulate_takes_events_that_name_its_own_contact(
    maria: Path, tmp_path: Path, named: str
) -> None:
    # Events copied from what an integrator sends to POST /v1/events name the contact.
    events = tmp_path / "events.jsonl"
    events.write_text(
        f'{{"at": "2026-11-23T10:30:00-03:00", "type": "button", "contact": {named}, '
        '"button_id": "pagar"}\n'
    )

    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--json",
        "--contact", str(maria), "--events", str(events), "--at", "2026-11-23T10:00:00-03:00",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    steps = [json.loads(line).get("step") for line in result.stdout.splitlines()]
    assert "pagamento" in steps


def test_simulate_shows_a_failed_send_and_exits_1(tmp_path: Path) -> None:
    joao = tmp_path / "joao.yaml"  # no `vencimento`: the reminder cannot be rendered
    joao.write_text('id: c-2\nphone: "+5511988887777"\nname: João\ncontext: {valor: 89.9}\n')

    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(joao),
        "--at", "2026-11-23T10:00:00-03:00", "--json",
    )  # fmt: skip

    assert result.returncode == 1
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    failed = [x for x in lines if x["kind"] == "failed"]
    assert failed
    assert failed[0]["step"] == "lembrete"
    assert "vencimento" in failed[0]["reason"]
    assert "message(s) failed" not in result.stderr  # counted in words
    assert "failed; the `failed` lines above say why" in result.stderr


def _config_with_flows(tmp_path: Path, flows: Path) -> Path:
    config = tmp_path / "disparo.yaml"
    config.write_text(
        CONFIG.read_text()
        .replace("flows: flows/", f"flows: {flows}/")
        .replace("templates: config/templates.yaml", f"templates: {ROOT}/config/templates.yaml")
    )
    return config


def test_another_flow_file_mid_edit_does_not_stop_simulate_or_graph(
    maria: Path, tmp_path: Path
) -> None:
    # A designer simulates the boleto reminder while another flow of the folder is
    # half written (or names a provider this config lacks).
    flows = tmp_path / "flows"
    flows.mkdir()
    boleto = flows / "cobranca_boleto.yaml"
    boleto.write_text((ROOT / "flows" / "cobranca_boleto.yaml").read_text())
    (flows / "rascunho.yaml").write_text(
        "flow: rascunho\ndefaults: {provider: robbu_prod}\nstart: a\nsteps:\n  a: {sendd: {}}\n"
    )
    config = _config_with_flows(tmp_path, flows)
    at = ("--at", "2026-11-23T10:00:00-03:00")

    for ref in ("cobranca_boleto", str(boleto)):
        result = disparo("simulate", ref, "--config", str(config), "--contact", str(maria), *at)
        assert result.returncode == 0, result.stderr
        assert "send      lembrete via sandbox" in result.stdout
        if ref == "cobranca_boleto":  # the folder was read: what it left out is said
            assert "rascunho.yaml is left out" in result.stderr
    graph = disparo("graph", "cobranca_boleto", "--config", str(config))
    assert graph.returncode == 0, graph.stderr
    assert graph.stdout.startswith("flowchart TD")

    # The flow simulated is still checked in full, at its own path.
    boleto.write_text(boleto.read_text().replace("provider: sandbox\n", "provider: robbu_prod\n"))
    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(config), "--contact", str(maria), *at
    )
    assert result.returncode == 1
    assert f"{boleto}:7:13: provider `robbu_prod` is not configured" in result.stderr


def test_status_exit_code_tells_healthy_needs_migrate_and_unreachable_apart(
    tmp_path: Path,
) -> None:
    """What a deploy script or a monitor branches on: 0 go on, 4 run `disparo migrate`
    (then retry), 3 page someone (the database is out of reach)."""
    config = _local_config(tmp_path)
    sqlite3.connect(tmp_path / "d.db").execute("CREATE TABLE unrelated (x)").connection.close()
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(
        config.read_text().replace(
            f"sqlite:///{tmp_path / 'd.db'}", "postgresql://disparo@127.0.0.1:1/disparo"
        )
    )

    pending = disparo("status", "--config", str(config))
    disparo("migrate", "--config", str(config))
    healthy = disparo("status", "--config", str(config))
    down = disparo("status", "--config", str(unreachable))

    assert pending.returncode == 4, pending.stderr
    assert "disparo migrate" in pending.stderr
    assert healthy.returncode == 0, healthy.stderr
    assert down.returncode == 3, down.stderr
    assert "disparo migrate" not in down.stderr
