"""Contacts CSV files as spreadsheets export them: what each row becomes, and
every problem pointed at by line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bulk_csv import ContactRow, ContactsFile, RowProblem


def read(tmp_path: Path, content: str | bytes) -> list[ContactRow | RowProblem]:
    path = tmp_path / "contatos.csv"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return list(ContactsFile(path, "contatos.csv").rows())


def rows(items: list[ContactRow | RowProblem]) -> list[ContactRow]:
    assert [i for i in items if isinstance(i, RowProblem)] == []
    return [i for i in items if isinstance(i, ContactRow)]


def problems(items: list[ContactRow | RowProblem]) -> list[str]:
    return [i.render("contatos.csv") for i in items if isinstance(i, RowProblem)]


def test_an_excel_export_with_bom_and_semicolons_reads_every_field(tmp_path: Path) -> None:
    text = (
        "id;Phone;E-mail;Nome;email;name;timezone;tags;valor:number;vencimento\n"
        'c-1;(11) 99999-8888;x;y;maria@example.com;Maria Sousa;America/Manaus;"vip; boleto;vip";'
        "1670,50;30/11/2026\r\n"
    )
    (row,) = rows(read(tmp_path, b"\xef\xbb\xbf" + text.encode()))

    contact = row.contact
    assert contact.id == "c-1"
    assert contact.phone == "+5511999998888"
    assert contact.email == "maria@example.com"
    assert contact.name == "Maria Sousa"
    assert contact.timezone == "America/Manaus"
    assert contact.tags == ("vip", "boleto")
    # Unknown columns are context, strings unless their header says `:number`.
    assert contact.context == {
        "E-mail": "x",
        "Nome": "y",
        "valor": 1670.5,
        "vencimento": "30/11/2026",
    }


def test_commas_are_sniffed_and_quoted_cells_keep_their_commas(tmp_path: Path) -> None:
    (row,) = rows(read(tmp_path, 'phone,name,endereco\n11 99999-8888,"Souza, Maria","Rua A, 1"\n'))

    assert row.contact.name == "Souza, Maria"
    assert row.contact.context == {"endereco": "Rua A, 1"}


def test_without_an_id_the_contact_is_known_by_its_phone_then_its_email(tmp_path: Path) -> None:
    found = rows(
        read(tmp_path, "id,phone,email\n,5511999998888,\n,,ana@example.com\nc-9,,x@example.com\n")
    )

    assert [r.contact.id for r in found] == ["+5511999998888", "ana@example.com", "c-9"]


def test_the_context_prefix_is_optional_and_frees_a_contact_field_name(tmp_path: Path) -> None:
    (row,) = rows(
        read(tmp_path, "id,name,context.name,context.valor:number,plano\nc-1,Ana,X,7,ouro\n")
    )

    assert row.contact.name == "Ana"
    assert row.contact.context == {"name": "X", "valor": 7, "plano": "ouro"}


def test_empty_cells_set_nothing_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    found = rows(read(tmp_path, "id;name;tags;valor:number;obs\nc-1;;;;\n;;;;\n\nc-2;Bia;;3;\n"))

    assert [r.line for r in found] == [2, 5]
    assert found[0].contact.name is None
    assert found[0].contact.tags is None
    assert found[0].contact.context is None
    assert found[1].contact.context == {"valor": 3}


@pytest.mark.parametrize(("cell", "value"), [("1670", 1670), ("-3", -3), ("1670.50", 1670.5)])
def test_number_columns_take_a_dot_or_a_comma_as_decimal_separator(
    tmp_path: Path, cell: str, value: float
) -> None:
    (row,) = rows(read(tmp_path, f"id;valor:number\nc-1;{cell}\n"))

    assert row.contact.context == {"valor": value}
    assert type(row.contact.context["valor"]) is type(value)


def test_every_bad_cell_is_reported_with_its_line_and_column(tmp_path: Path) -> None:
    found = read(
        tmp_path,
        "id,phone,email,timezone,valor:number\n"
        "c-1,11 99999-8888,a@b.com,America/Sao_Paulo,10\n"
        'c-2,11 1234,nope,Mars/Base,"1.670,50"\n'
        ",,,,\n"
        ",,,America/Sao_Paulo,1.670\n"
        "c-3,11 99999-8888,a@b.com\n",
    )

    assert problems(found) == [
        "contatos.csv:3: phone: '11 1234' is not a valid phone number; "
        "write it with the DDD, e.g. 11 99999-8888 or +55 11 99999-8888",
        "contatos.csv:3: email: 'nope' is not an e-mail address; write it as name@domain.com",
        "contatos.csv:3: timezone: 'Mars/Base' is not an IANA timezone; "
        "write e.g. America/Sao_Paulo",
        "contatos.csv:3: valor:number: '1.670,50' is not a number; write digits with at most "
        "one decimal separator, e.g. 1670 or 1670,50 (no thousands separators)",
        "contatos.csv:5: id: the row names no contact; fill its `id`, `phone` or `email`",
        "contatos.csv:5: valor:number: '1.670' is ambiguous; write 1670 if the dot "
        "separates thousands, 1,670 if it is a decimal",
        "contatos.csv:6: row: 3 cells but the header names 5 columns; "
        'quote cells that contain `,` ("a,b") and give every row one cell per column',
    ]
    assert [r.line for r in found if isinstance(r, ContactRow)] == [2]


def test_line_numbers_count_the_lines_a_quoted_cell_spans(tmp_path: Path) -> None:
    found = read(tmp_path, 'id,obs,phone\nc-1,"linha 1\nlinha 2",11 99999-8888\nc-2,,123\n')

    assert [r.line for r in found if isinstance(r, ContactRow)] == [2]
    assert problems(found)[0].startswith("contatos.csv:4: phone: '123'")


def test_header_problems_are_reported_together_and_stop_the_reading(tmp_path: Path) -> None:
    found = read(tmp_path, "nome,,valor:texto,Name,name,valor,context.valor\nx,y,z,1,2,3,4\n")

    assert problems(found) == [
        "contatos.csv:1: header: column 2 has no name; name it (e.g. `valor`) or delete the column",
        "contatos.csv:1: header: `valor:texto` has a type suffix disparo does not know; "
        "the only one is `:number` (e.g. `valor:number`)",
        "contatos.csv:1: header: `name` is the same column as `Name`; keep one of them",
        "contatos.csv:1: header: `context.valor` is the same column as `valor`; keep one of them",
    ]


def test_a_file_must_name_its_contacts_by_id_phone_or_email(tmp_path: Path) -> None:
    assert problems(read(tmp_path, "nome;valor\nAna;1\n")) == [
        "contatos.csv:1: header: the file needs an `id`, `phone` or `email` column to know "
        "each contact; the header has `nome`, `valor`"
    ]


def test_an_empty_file_asks_for_a_header(tmp_path: Path) -> None:
    assert problems(read(tmp_path, b"\xef\xbb\xbf")) == [
        "contatos.csv:1: header: the first line must name the columns; "
        "write a header such as id,phone,name"
    ]


def test_a_latin1_export_is_reported_once_with_how_to_save_it(tmp_path: Path) -> None:
    found = read(tmp_path, "id;name\nc-1;João\nc-2;Ana\nc-3;Conceição\n".encode("latin-1"))

    assert problems(found) == [
        "contatos.csv:2: encoding: the line is not valid UTF-8 (and 1 more lines); "
        'save the file as UTF-8 (Excel: Save As > "CSV UTF-8")'
    ]


def test_a_utf16_export_is_refused_with_how_to_save_it(tmp_path: Path) -> None:
    found = read(tmp_path, "id;name\nc-1;Ana\n".encode("utf-16"))

    assert problems(found) == [
        "contatos.csv:1: encoding: the file is UTF-16, not UTF-8; save the file as UTF-8 (Excel: "
        'Save As > "CSV UTF-8")'
    ]


def test_quoting_mistakes_are_pointed_at_and_the_rows_after_them_still_read(
    tmp_path: Path,
) -> None:
    found = read(tmp_path, 'id,name\nc-1,"Ana" Maria\nc-2,Bia\nc-3,"Carla\nc-4,Duda\n')

    assert [r.line for r in found if isinstance(r, ContactRow)] == [3]
    lines = problems(found)
    assert [p.split(": ")[0:2] for p in lines] == [
        ["contatos.csv:2", "row"],
        ["contatos.csv:4", "row"],
    ]
    assert all('close every quoted cell with a second `"`' in p for p in lines)


def test_the_row_identity_ignores_formatting_and_order_but_not_data(tmp_path: Path) -> None:
    first = rows(read(tmp_path, "id,phone,valor\nc-1,11 99999-8888,10\nc-2,11 98888-7777,20\n"))
    again = rows(read(tmp_path, "valor,phone,id\n20,+5511988887777,c-2\n10,5511999998888,c-1\n"))
    changed = rows(read(tmp_path, "id,phone,valor\nc-1,11 99999-8888,11\n"))

    keys = {r.idempotency_key("cobranca_boleto") for r in first}
    assert {r.idempotency_key("cobranca_boleto") for r in again} == keys
    assert changed[0].idempotency_key("cobranca_boleto") not in keys
    assert first[0].idempotency_key("cobranca_boleto").startswith("csv:cobranca_boleto:c-1:row=")


def test_an_idempotency_key_column_is_the_row_identity(tmp_path: Path) -> None:
    found = rows(read(tmp_path, "id,valor,idempotency_key\nc-1,10,2026-11\nc-1,99,2026-11\n"))

    assert [r.idempotency_key("f") for r in found] == ["csv:f:c-1:key=2026-11"] * 2
    assert found[0].digest != found[1].digest


@pytest.mark.parametrize("cell", ["5,51199E+12", "5.51199e+12", "5,5119999888E+12"])
def test_a_phone_excel_wrote_in_scientific_notation_says_how_to_export_it(
    tmp_path: Path, cell: str
) -> None:
    # Excel shows a 13-digit number as 5,51199E+12 and exports it so: the digits are
    # lost, and "it has letters" would not tell the campaign manager what to do.
    found = read(tmp_path, f"id;phone\nc-1;{cell}\n")

    assert problems(found) == [
        f"contatos.csv:2: phone: {cell!r} is a number Excel wrote in scientific notation, "
        "which loses its last digits; format the column as Text in Excel "
        "(or write the numbers with a leading +) and export the file again"
    ]


def test_a_nul_character_in_a_cell_is_a_problem_of_its_row_not_a_store_failure(
    tmp_path: Path,
) -> None:
    # PostgreSQL refuses text with a NUL: the batch failed as "the store is
    # unavailable ... run the same command again", which failed the same way forever.
    found = read(tmp_path, b"id,phone,nome\nc-1,11 99999-8888,Jo\x00ana\nc-2,11 99999-7777,Ana\n")

    assert problems(found) == [
        "contatos.csv:2: nome: the cell holds a NUL character (\\x00), which cannot be "
        "stored; remove it (an export from another program may have left it)"
    ]
    assert [r.line for r in found if isinstance(r, ContactRow)] == [3]
