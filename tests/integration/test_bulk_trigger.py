"""`disparo trigger FLOW --contacts FILE.csv`: bulk starts that are idempotent per row,
all-or-nothing on bad files, and leave the sending to the serving process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import bulk
from engine.bulk import ContactsFileError, TriggerTally, check_contacts, start_runs, trigger
from engine.bulk_csv import ContactsFile
from engine.errors import StoreUnavailable, UserInputError
from engine.models import MessageStatus, Run
from storage.base import BulkStart, BulkStartResult
from tests.integration.engine_kit import ROOT, Harness, harness, settings_for

FLOW = "cobranca_boleto"
GOOD = (
    "id,phone,name,valor:number,vencimento\n"
    "c-1,11 99999-8888,Maria Souza,1670,2026-11-30\n"
    "c-2,(11) 9888-7777,João Lima,250,2026-11-30\n"
    "c-3,+55 21 98765-4321,Ana Reis,99,2026-12-05\n"
)


def csv_file(tmp_path: Path, content: str | bytes, name: str = "contatos.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


async def open_runs(h: Harness, *contacts: str) -> dict[str, list[Run]]:
    return {c: await h.engine.store.list_open_runs(c) for c in contacts}


async def run_trigger(h: Harness, path: Path) -> TriggerTally:
    return await trigger(h.engine, FLOW, path, name=path.name, progress=False)


async def test_a_file_starts_one_run_per_row_and_a_rerun_starts_nothing_new(
    tmp_path: Path,
) -> None:
    path = csv_file(tmp_path, GOOD)
    async with harness(settings_for(tmp_path)) as h:
        first = await run_trigger(h, path)
        again = await run_trigger(h, path)
        # The same rows re-exported in another order and phone format are the same rows.
        reexport = csv_file(
            tmp_path,
            "phone,id,name,valor:number,vencimento\n"
            "5521987654321,c-3,Ana Reis,99,2026-12-05\n"
            "+55 11 99999-8888,c-1,Maria Souza,1670,2026-11-30\n"
            "11 99888-7777,c-2,João Lima,250,2026-11-30\n",
            "reexport.csv",
        )
        third = await run_trigger(h, reexport)

        assert first.summary() == (
            "started 3, already running 0, skipped duplicates 0 "
            "(0 triggered before, 0 repeated in the file)"
        )
        assert (again.started, again.triggered_before, again.skipped_duplicates) == (0, 3, 3)
        assert (third.started, third.triggered_before) == (0, 3)
        runs = await open_runs(h, "c-1", "c-2", "c-3")
        assert {c: len(r) for c, r in runs.items()} == {"c-1": 1, "c-2": 1, "c-3": 1}
        maria = await h.engine.get_contact("c-1")
        assert maria.phone == "+5511999998888"
        assert maria.context["valor"] == 1670
        # (11) 9888-7777 was written before the ninth digit.
        assert (await h.engine.get_contact("c-2")).phone == "+5511998887777"


async def test_the_runs_wait_in_the_store_for_the_serving_process_to_send_them(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    async with harness(settings) as h:
        await run_trigger(h, csv_file(tmp_path, GOOD))
        (run,) = (await open_runs(h, "c-1"))["c-1"]
        # The trigger ran no dispatcher: the run waits to be entered, nothing is queued.
        assert run.step is None
        assert await h.messages(run.id) == []

    # Another engine on the same database, as `disparo serve` is, enters and sends them.
    async with harness(settings) as served:
        await served.engine.settle()

        assert (await served.run(run.id)).step == "lembrete"
        (reminder,) = await served.messages(run.id)
        assert reminder.status == MessageStatus.SENT
        assert reminder.payload["params"]["Valor"] == "R$ 1.670,00"  # `valor:number` is a number
        (started,) = await served.engine.store.list_events(run_id=run.id, kind_prefix="run.started")
        assert started.data["trigger"] == "csv"


async def test_a_file_with_three_bad_rows_reports_all_three_and_starts_nothing(
    tmp_path: Path,
) -> None:
    path = csv_file(
        tmp_path,
        "id,phone,name,valor:number\n"
        "c-1,11 99999-8888,Maria,10\n"
        "c-2,11 1234,João,20\n"
        "c-3,11 97777-6666,Ana,vinte\n"
        "c-4,11 96666-5555,Bia,30\n"
        ",,Sem Contato,40\n",
    )
    async with harness(settings_for(tmp_path)) as h:
        with pytest.raises(ContactsFileError) as caught:
            await run_trigger(h, path)

        assert str(caught.value).splitlines() == [
            "contatos.csv:3: phone: '11 1234' is not a valid phone number; "
            "write it with the DDD, e.g. 11 99999-8888 or +55 11 99999-8888",
            "contatos.csv:4: valor:number: 'vinte' is not a number; write digits with at most "
            "one decimal separator, e.g. 1670 or 1670,50 (no thousands separators)",
            "contatos.csv:6: id: the row names no contact; fill its `id`, `phone` or `email`",
            "3 problems in contatos.csv; nothing was started",
        ]
        # Not even the good rows' contacts were written.
        assert await h.engine.store.get_contacts(["c-1", "c-4"]) == {}
        assert await open_runs(h, "c-1", "c-4") == {"c-1": [], "c-4": []}


async def test_a_semicolon_file_with_a_bom_starts_its_runs(tmp_path: Path) -> None:
    text = (
        "id;telefone;phone;name;tags;valor:number;vencimento\n"
        'c-1;x;11 99999-8888;Conceição Araújo;"vip;boleto";1670,50;2026-11-30\n'
        "c-2;y;11 98888-7777;José;;30;2026-11-30\n"
    )
    path = csv_file(tmp_path, b"\xef\xbb\xbf" + text.encode("utf-8"))
    async with harness(settings_for(tmp_path)) as h:
        tally = await run_trigger(h, path)

        assert tally.started == 2
        contact = await h.engine.get_contact("c-1")
        assert contact.name == "Conceição Araújo"
        assert contact.phone == "+5511999998888"
        assert set(contact.tags) == {"vip", "boleto"}
        assert contact.context["valor"] == 1670.5
        assert contact.context["telefone"] == "x"


async def test_contacts_already_in_a_one_at_a_time_flow_are_counted_not_errors(
    tmp_path: Path,
) -> None:
    async with harness(settings_for(tmp_path)) as h:
        running = await h.start(FLOW, "c-1", context={"valor": 1, "vencimento": "2026-11-30"})

        tally = await run_trigger(h, csv_file(tmp_path, GOOD))

        assert tally.summary() == (
            "started 2, already running 1, skipped duplicates 0 "
            "(0 triggered before, 0 repeated in the file)"
        )
        assert [r.id for r in (await open_runs(h, "c-1"))["c-1"]] == [running.id]
        skipped = await h.engine.store.list_events(contact_id="c-1", kind_prefix="run.trigger")
        assert [e.data["trigger"] for e in skipped] == ["csv"]


async def test_rows_repeated_in_the_file_start_one_run(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD + "c-1,+5511999998888,Maria Souza,1670,2026-11-30\n")
    async with harness(settings_for(tmp_path)) as h:
        tally = await run_trigger(h, path)

        assert (tally.started, tally.repeated, tally.skipped_duplicates) == (3, 1, 1)
        assert len((await open_runs(h, "c-1"))["c-1"]) == 1


async def test_one_key_for_two_different_rows_of_a_contact_is_a_problem(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path, "id,valor,idempotency_key\nc-1,10,2026-11\nc-2,10,2026-11\nc-1,11,2026-11\n"
    )
    async with harness(settings_for(tmp_path)) as h:
        with pytest.raises(ContactsFileError) as caught:
            await run_trigger(h, path)

        assert str(caught.value).splitlines()[0] == (
            "contatos.csv:4: idempotency_key: line 2 has the same key for contact c-1 with "
            "other data; give each row its own key or delete one of them"
        )


async def test_a_trigger_a_store_failure_interrupted_finishes_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = csv_file(tmp_path, GOOD)
    async with harness(settings_for(tmp_path)) as h:
        real_start = h.engine.store.start_runs
        calls = 0

        async def failing_third_time(starts: BulkStart) -> BulkStartResult:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise StoreUnavailable("the database is locked")
            return await real_start(starts)

        monkeypatch.setattr(bulk, "BATCH", 1)  # a batch per row: the third row fails
        monkeypatch.setattr(h.engine.store, "start_runs", failing_third_time)
        with pytest.raises(StoreUnavailable) as caught:
            await run_trigger(h, path)
        monkeypatch.setattr(h.engine.store, "start_runs", real_start)
        finished = await run_trigger(h, path)

        assert str(caught.value) == (
            "the database is locked; 2 run(s) were started before that; run the same command "
            "again to start the rest (rows already started are skipped)"
        )
        assert (finished.started, finished.triggered_before) == (1, 2)
        runs = await open_runs(h, "c-1", "c-2", "c-3")
        assert sorted(len(r) for r in runs.values()) == [1, 1, 1]


async def test_a_file_changed_after_its_check_starts_nothing(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD)
    contacts = ContactsFile(path, "contatos.csv")
    async with harness(settings_for(tmp_path)) as h:
        checked = check_contacts(contacts)
        path.write_text(GOOD + "c-4,123,Zé,1,2026-11-30\n", encoding="utf-8")

        with pytest.raises(UserInputError, match="changed while it was being checked"):
            await start_runs(h.engine, FLOW, contacts, checked)

        assert await open_runs(h, "c-1") == {"c-1": []}


def test_the_command_line_exit_codes_and_summary(tmp_path: Path) -> None:
    config = tmp_path / "disparo.yaml"
    config.write_text(
        (ROOT / "config" / "disparo.yaml")
        .read_text()
        .replace("sqlite:///var/disparo.db", f"sqlite:///{tmp_path / 'd.db'}")
        .replace("flows: flows/", f"flows: {ROOT / 'flows'}")
        .replace("templates: config/templates.yaml", f"templates: {ROOT / 'config/templates.yaml'}")
    )
    good = csv_file(tmp_path, GOOD)
    csv_file(tmp_path, GOOD + "c-4,11 1234,Zé,1,2026-11-30\nc-5,,,x,\n", "bad.csv")

    def disparo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args, "--config", str(config)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    unmigrated = disparo("trigger", FLOW, "--contacts", str(good))
    disparo("migrate")
    rejected = disparo("trigger", FLOW, "--contacts", "bad.csv")
    first = disparo("trigger", FLOW, "--contacts", "contatos.csv")
    again = disparo("trigger", FLOW, "--contacts", "contatos.csv")
    unknown = disparo("trigger", "cobranca", "--contacts", "contatos.csv")

    assert unmigrated.returncode == 3
    assert "disparo migrate" in unmigrated.stderr
    assert rejected.returncode == 1
    assert rejected.stderr.splitlines()[0].startswith("bad.csv:5: phone: '11 1234'")
    assert rejected.stderr.splitlines()[1].startswith("bad.csv:6: valor:number: 'x'")
    assert "2 problems in bad.csv; nothing was started" in rejected.stderr
    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        "started 3, already running 0, skipped duplicates 0 "
        "(0 triggered before, 0 repeated in the file)\n"
    )
    assert again.returncode == 0
    assert again.stdout.startswith("started 0, already running 0, skipped duplicates 3")
    assert unknown.returncode == 1
    assert "flow 'cobranca' is not loaded" in unknown.stderr


async def test_a_folder_given_as_the_csv_file_is_called_a_folder(tmp_path: Path) -> None:
    # It said "no such file" of a folder that is there: the user looked for a typo.
    async with harness(settings_for(tmp_path)) as h:
        with pytest.raises(UserInputError) as caught:
            await trigger(h.engine, FLOW, tmp_path, name="contatos/")

    assert str(caught.value) == "contatos/: this is a folder; pass --contacts PATH to a CSV file"
