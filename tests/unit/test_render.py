"""Rendering: pt-BR filters, plain-words errors, the sandbox against escapes and
resource abuse, expressions, ``set:`` values and the compile cache."""

from __future__ import annotations

import re
import tracemalloc
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import render, render_budget
from engine.errors import RenderError
from engine.models import Contact
from engine.pt_br import brl
from engine.render import (
    RenderScope,
    check_expression_syntax,
    check_template_syntax,
    evaluate,
    is_true,
    render_string,
    render_value,
)
from engine.sweep_context import context_timestamp

SP = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)  # Monday, 10:00 in São Paulo
CONTACT = Contact(
    id="c-1",
    phone="+5511999998888",
    name="maria da silva",
    tags=("vip",),
    context={"valor": 1670, "vencimento": "2026-11-30", "endereco": {"cidade": "Santos"}},
)


def scope(context: dict[str, Any] | None = None, contact: Contact = CONTACT) -> RenderScope:
    merged = dict(contact.context) if context is None else context
    run = {"id": "run-1", "flow": "cobranca", "step": "lembrete", "vars": {"tentativa": 2}}
    return RenderScope(contact=contact, context=merged, run=run, now=NOW, timezone=SP)


def text(source: str, context: dict[str, Any] | None = None, **kw: Any) -> str:
    return render_string(
        source, scope(context), flow="cobranca", step="lembrete", field="send.text", **kw
    )


def error(source: str, context: dict[str, Any] | None = None) -> str:
    with pytest.raises(RenderError) as info:
        text(source, context)
    assert (info.value.flow, info.value.step, info.value.field) == (
        "cobranca",
        "lembrete",
        "send.text",
    )
    return str(info.value)


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1670, "R$ 1.670,00"),
        (1234.5, "R$ 1.234,50"),
        (-1234.5, "-R$ 1.234,50"),
        (0, "R$ 0,00"),
        (0.5, "R$ 0,50"),
        (1234567.891, "R$ 1.234.567,89"),
        (Decimal("2.675"), "R$ 2,68"),
        (2.675, "R$ 2,68"),  # half-up on the number as written, not its binary value
        (0.005, "R$ 0,01"),
        (-0.004, "R$ 0,00"),  # no "-R$ 0,00"
        ("1670", "R$ 1.670,00"),
        ("1670.5", "R$ 1.670,50"),
        ("1.670,50", "R$ 1.670,50"),
        ("1670,5", "R$ 1.670,50"),
        ("1.670.000", "R$ 1.670.000,00"),  # two dotted groups: pt-BR thousands, no doubt
        (" 99 ", "R$ 99,00"),
        (10**12, "R$ 1.000.000.000.000,00"),
    ],
)
def test_brl_formats_reais_rounding_half_up(value: Any, expected: str) -> None:
    assert text("{{ context.v | brl }}", {"v": value}) == expected


@pytest.mark.parametrize("value", ["abc", "1,670.50", True, None, float("nan"), float("inf"), []])
def test_brl_refuses_what_is_not_a_number(value: Any) -> None:
    assert "`brl` needs a" in error("{{ context.v | brl }}", {"v": value})


@pytest.mark.parametrize("value", ["1.670", "-1.670", "0.500"])
def test_brl_refuses_a_dot_that_may_separate_thousands_or_decimals(value: str) -> None:
    # "1.670" is R$ 1.670,00 to a Brazilian and R$ 1,67 to a program: never guess.
    message = error("{{ context.v | brl }}", {"v": value})
    assert "`brl` cannot tell whether a string like 1.670 is R$ 1.670,00 or R$ 1,67" in message
    assert "without a thousands separator (1670) or with a decimal comma (1.670,00)" in message


@given(st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, places=4))
def test_brl_reads_back_as_the_amount_rounded_half_up(amount: Decimal) -> None:
    formatted = brl(amount)
    sign, _, number = formatted.partition("R$ ")
    units, cents = number.split(",")
    assert re.fullmatch(r"\d{1,3}(\.\d{3})*", units)
    assert len(cents) == 2
    parsed = Decimal(units.replace(".", "") + "." + cents) * (-1 if sign == "-" else 1)
    assert parsed == amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert sign in ("", "-")


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_brl_of_a_number_and_of_its_text_agree(amount: int) -> None:
    assert brl(amount) == brl(str(amount))
    if abs(amount) < 2**53:  # floats hold these integers exactly
        assert brl(float(amount)) == brl(amount)


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("2026-11-30", "%d de %B", "30 de novembro"),
        ("2026-03-07", "%d de %B de %Y", "07 de março de 2026"),
        ("2026-11-30", "%A", "segunda-feira"),
        ("2026-03-07", "%A", "sábado"),
        ("2026-11-30", "%a, %d %b", "seg, 30 nov"),
        ("2026-11-30", None, "30/11/2026"),
        ("2026-11-30", "100%% em %B", "100% em novembro"),
        ("2026-11-30T10:00:00-03:00", "%d/%m %H:%M", "30/11 10:00"),
        ("2026-12-01T01:30:00Z", "%d/%m %H:%M", "30/11 22:30"),  # converted to São Paulo
        ("2026-11-30T10:00:00", "%H:%M", "10:00"),  # naive: already local
        (datetime(2026, 12, 1, 1, 30, tzinfo=UTC), "%A %H:%M", "segunda-feira 22:30"),
        (date(2026, 2, 1), "%B", "fevereiro"),
    ],
)
def test_date_prints_portuguese_names_in_the_render_timezone(
    value: Any, fmt: str | None, expected: str
) -> None:
    source = "{{ context.v | date }}" if fmt is None else "{{ context.v | date(context.f) }}"
    assert text(source, {"v": value, "f": fmt}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795518000, "24/11/2026 08:00"),  # Unix seconds, shown in São Paulo
        (1795518000.5, "24/11/2026 08:00"),
        (1795518000000, "24/11/2026 08:00"),  # milliseconds, as JavaScript's Date.now()
    ],
)
def test_date_prints_unix_times_in_the_render_timezone(value: Any, expected: str) -> None:
    assert text("{{ context.v | date('%d/%m/%Y %H:%M') }}", {"v": value}) == expected


@given(st.integers(min_value=10**9, max_value=253_402_300_799_000))
def test_date_prints_the_moment_a_sweep_reads_from_the_same_value(value: int) -> None:
    contact = Contact(id="c-1", context={"vence_em": value})
    swept = context_timestamp(contact, "vence_em", SP)

    assert swept is not None
    shown = text("{{ context.v | date('%Y-%m-%d %H:%M:%S') }}", {"v": value})
    assert shown == swept.astimezone(SP).strftime("%Y-%m-%d %H:%M:%S")


def test_every_month_has_its_portuguese_name() -> None:
    months = [text("{{ context.v | date('%B') }}", {"v": f"2026-{m:02d}-01"}) for m in range(1, 13)]
    assert months == [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ]


@pytest.mark.parametrize("value", ["30/11/2026", "amanhã", 20261130, True, 1e20, float("nan")])
def test_date_refuses_what_is_not_a_date(value: Any) -> None:
    assert "`date` needs a date" in error("{{ context.v | date }}", {"v": value})


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (20261130, "the number is too small for a Unix time"),
        (1e20, "the number is past the year 9999 even as Unix milliseconds"),
        ("9999-12-31T23:59:59-03:00", "out of the range of times"),  # passes through UTC
        ("0001-01-01T00:00:00+00:00", "out of the range of times"),
    ],
)
def test_date_says_why_a_value_is_not_a_date(value: Any, says: str) -> None:
    assert says in error("{{ context.v | date }}", {"v": value})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("maria da silva", "Maria"),
        ("  JOÃO pedro", "João"),
        ("ana-clara souza", "Ana-Clara"),
        ("McDonald Jr", "McDonald"),
        ("", ""),
    ],
)
def test_first_name(name: str, expected: str) -> None:
    assert text("{{ context.n | first_name }}", {"n": name}) == expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+5511999998888", "(11) 99999-8888"),
        ("+551133334444", "(11) 3333-4444"),
        ("+14155552671", "+1 415-555-2671"),
    ],
)
def test_phone(number: str, expected: str) -> None:
    assert text("{{ context.p | phone }}", {"p": number}) == expected


def test_phone_refuses_what_is_not_a_phone() -> None:
    assert "`phone` needs a phone number" in error("{{ context.p | phone }}", {"p": "ligue já"})


def test_builtin_case_filters() -> None:
    assert text(
        "{{ context.n | upper }} {{ context.n | lower }} {{ context.n | title }}",
        {"n": "ana SOUZA"},
    ) == ("ANA SOUZA ana souza Ana Souza")


# ------------------------------------------------------------------ variables


def test_templates_see_contact_context_run_and_now() -> None:
    source = (
        "{{ contact.id }} {{ contact.first_name }} {{ contact.phone | phone }} "
        "{{ 'vip' in contact.tags }} {{ contact.context.endereco.cidade }} "
        "{{ context.valor }} {{ run.step }} {{ run.vars.tentativa }} {{ now.hour }}"
    )
    assert text(source) == "c-1 Maria (11) 99999-8888 True Santos 1670 lembrete 2 10"


def test_a_message_reads_like_its_source_around_tags() -> None:
    source = "Oi!\n{% if context.valor > 1000 %}\nValor alto.\n{% endif %}\nTchau\n"
    assert text(source) == "Oi!\nValor alto.\nTchau"


def test_scope_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RenderScope(contact=CONTACT, context={}, run={}, now=datetime(2026, 1, 1), timezone=SP)  # noqa: DTZ001


# ------------------------------------------------------------------ missing values


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ context.valr }}", "`context.valr` is not defined for this contact"),
        ("{{ context.endereco.cep }}", "`context.endereco.cep` is not defined for this contact"),
        (
            "{{ contact.context.endereco.cep }}",
            "`contact.context.endereco.cep` is not defined for this contact",
        ),
        ("{{ contact.email }}", "`contact.email` is not defined for this contact"),
        ("{{ run.vars.codigo }}", "`run.vars.codigo` is not defined for this run"),
        ("{{ context['dia util'] }}", "`context['dia util']` is not defined for this contact"),
        (
            "{% for i in context.itens %}{{ i.preco }}{% endfor %}",
            "`context.itens[0].preco` is not defined for this contact",
        ),
        ("{{ valor }}", "`valor` is not defined; templates can use contact, context, run, now"),
        ("{{ context.valr | brl }}", "`context.valr` is not defined for this contact"),
        ("{{ [1, context.valr] }}", "`context.valr` is not defined for this contact"),
    ],
)
def test_a_missing_value_is_an_error_naming_flow_step_field_and_path(
    source: str, message: str
) -> None:
    context = {**CONTACT.context, "itens": [{"nome": "x"}]}
    assert error(source, context) == f"cobranca/lembrete/send.text: {message}"


def test_a_missing_value_may_be_given_a_default() -> None:
    assert text("{{ context.valr | default('sem valor') }}") == "sem valor"
    assert text("{% if context.valr is defined %}a{% else %}b{% endif %}") == "b"


def test_none_and_functions_are_never_printed() -> None:
    assert "printed an empty value (None)" in error("Oi {{ context.nome }}", {"nome": None})
    assert text("Oi {{ context.nome | default('cliente', true) }}", {"nome": None}) == (
        "Oi cliente"
    )
    assert "printed a function" in error("{{ context.nome.upper }}", {"nome": "ana"})


def test_errors_carry_the_template_line() -> None:
    assert error("linha 1\n{{ context.valor > 'a' }}").startswith(
        "cobranca/lembrete/send.text: line 2: '>' not supported"
    )


# ------------------------------------------------------------------ the sandbox

SSTI = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ 'a' | attr('__class__') }}",
    "{{ ['a'] | map('attr', '__class__') | list }}",
    "{{ ['a'] | map(attribute='__class__') | list }}",
    "{{ context | attr('__class__') }}",
    "{{ 'a' | attr('format') }}",
    "{{ ('{0.__class__}' | attr('format'))(1) }}",  # CVE-2025-27516
    "{{ '{0.__class__.__init__.__globals__}'.format(contact) }}",  # CVE-2016-10745
    "{{ '{x.__class__}'.format_map({'x': 1}) }}",  # CVE-2019-10906
    "{% set f = '{0.__class__}'.format %}{{ f(1) }}",  # CVE-2024-56326
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ self }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__dict__ }}",
    "{{ range.__globals__ }}",
    "{{ dict.mro() }}",
    "{{ now.__class__.__subclasses__() }}",
    "{{ contact.context.update({'pago': true}) }}",
    "{{ context.pop('valor') }}",
    "{{ run.vars.clear() }}",
    "{{ config }}",
    "{{ request.application.__globals__ }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% extends 'base.html' %}",
    "{% from 'x' import y %}",
    "{% macro m() %}{{ caller() }}{% endmacro %}",
    "{% set x %}{{ context }}{% endset %}",
    "{% filter upper %}x{% endfilter %}",
    "{% autoescape false %}x{% endautoescape %}",
    "{{ '{:{w}}'.format(1, w=999999999) }}",  # nested widths are not checked, so refused
]


@pytest.mark.parametrize("source", SSTI)
def test_template_injection_attempts_fail_and_leak_nothing(source: str) -> None:
    message = error(source)
    for leak in ("<class", "<function", "<built-in", "<module", "0x", "TemplateReference"):
        assert leak not in message


ABUSE = [
    "{{ 'a' * 10**9 }}",
    "{{ 10**9 * 'a' }}",
    "{{ [0] * 10**9 }}",
    "{{ range(10**9) | list }}",
    "{{ 9 ** (9 ** 9) }}",
    "{% set n = 10**1000 %}{{ n * n * n * n * n }}",
    "{{ '%999999999d' | format(1) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'a'.center(10**9) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'.zfill(10**9) }}",
    "{{ ('\t' * 1000).expandtabs(10**6) }}",
    "{{ 'a' | center(10**9) }}",
    "{{ ('a\n' * 1000) | indent(10**6) }}",
    "{{ [1] | batch(10**9, 0) | list }}",
    "{{ [1] | slice(10**9) | list }}",
    "{% set a = 'a' * 65536 %}{{ a.replace('a', a) }}",
    "{% set a = 'a' * 65536 %}{{ a | replace('a', a) }}",
    "{% set a = 'a' * 65536 %}{{ a.join([a, a]) }}",
    "{% set a = 'a' * 65536 %}{{ [a, a] | join }}",
    "{% set a = 'a' * 40000 %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}",
    "{% set a = 'a' * 40000 %}{% set a = a + a %}{% set a = a + a %}{{ a }}",
    "{% set a = 'a' * 40000 %}{% set a = '%s%s' % (a, a) %}{{ a }}",
    "{% for i in range(100000) %}{{ i }}{% endfor %}",
    "{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}",
]


@pytest.mark.parametrize("source", ABUSE)
def test_resource_abuse_is_refused_before_it_costs_memory(source: str) -> None:
    text("warm {{ context.valor }}")  # first-use allocations are not the template's
    tracemalloc.start()
    try:
        message = error(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "over the template limit" in message or "Range too big" in message
    assert peak < 8_000_000


def test_nested_loops_stop_at_the_loop_budget_instead_of_stalling_the_engine() -> None:
    # 200 x 200 = 40,000 iterations, no output: only the loop budget refuses it.
    message = error("{% for i in range(200) %}{% for j in range(200) %}{% endfor %}{% endfor %}")
    assert "over the template limit of 10,000 iterations in one message" in message
    assert "nested loops multiply" in message
    # Loops over contact data count too.
    rows = {"itens": list(range(150))}
    nested = "{% for a in context.itens %}{% for b in context.itens %}{% endfor %}{% endfor %}"
    assert "10,000 iterations" in error(nested, context=rows)


def test_the_loop_budget_is_per_render_and_allows_real_loops() -> None:
    source = (
        "{% for i in range(9000) %}{% endfor %}{% for x in context.itens %}{{ x }};{% endfor %}"
    )
    for _ in range(3):  # each render has its own budget
        assert text(source, context={"itens": ["arroz", "feijão"]}) == "arroz;feijão;"
    assert text("{% for x in [] %}{{ x }}{% else %}vazio{% endfor %}") == "vazio"


def test_a_filter_chain_that_builds_too_much_text_fails_the_message() -> None:
    # No {% for %}: map runs `center` 100,000 times, 60 KB each (GBs, in seconds).
    source = "{{ range(100000) | map('string') | map('center', 60000) | list | length }}"
    message = error(source)
    assert "builds over 4,000,000 characters of text (or list items) in one message" in message


def test_a_render_that_runs_past_its_time_fails_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A budget of no time at all: the first step of the render is already too late.
    monkeypatch.setattr(render_budget, "MAX_RENDER_SECONDS", -1.0)
    message = error("{{ context.itens | map('upper') | join(',') }}", context={"itens": ["a"]})
    assert "took over -1 s to render one message" in message
    monkeypatch.undo()
    assert text("{{ context.itens | map('upper') | join(',') }}", context={"itens": ["a"]}) == "A"


def test_the_output_may_reach_the_limit_exactly() -> None:
    assert len(text("{{ 'a' * 65536 }}")) == 65536
    assert "over the template limit of 65,536 characters" in error("{{ 'a' * 65536 }}b")


# A list of 10,000 references to one 1,000-character text: 20 KB to hold, 10 MB as
# text. str() of a collection is one call that runs to the end, so only counting
# before printing keeps a 60,000-character text times 100,000 from building 6 GB.
PRINTED_BOMBS = [
    "{{ [context.t] * 10000 }}",
    "{{ [[context.t] * 100] * 100 }}",
    "{{ ([context.t] * 10000) | string }}",
    "{{ ([context.t] * 10000) | tojson }}",
    "{{ ([context.t] * 10000) | pprint }}",
    "{{ ([context.t] * 10000) | join }}",
    "{{ ([[context.t]] * 10000) | join(',') }}",
    "{{ '%s' | format([context.t] * 10000) }}",
    "{{ 'x' ~ [context.t] * 10000 }}",
    "{{ '%s' % ([context.t] * 10000,) }}",
    "{{ '{}'.format([context.t] * 10000) }}",
    "{{ dict(a=[context.t] * 10000) }}",
]


@pytest.mark.parametrize("source", PRINTED_BOMBS)
def test_a_collection_too_long_to_print_is_refused_before_its_text_is_built(source: str) -> None:
    data = {"t": "a" * 1000}
    text("warm {{ context.t }}", context=data)
    tracemalloc.start()
    try:
        message = error(source, context=data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "over the template limit" in message
    assert peak < 2_000_000


def test_collections_of_a_real_size_still_print_and_count() -> None:
    data = {"itens": ["arroz", "feijão"], "n": list(range(1000))}
    assert text("{{ context.itens }}", context=data) == "['arroz', 'feijão']"
    assert text("{{ context.itens | join(', ') }} ({{ context.n | length }})", data) == (
        "arroz, feijão (1000)"
    )
    assert text("{{ context.n | tojson | length }}", context=data) == "4890"
    assert text("{{ (context.n * 60) | length }}", context=data) == "60000"
    assert text("{{ context.n | join(',') | length }}", context=data) == "3889"
    assert len(text("{{ (context.n * 20) | join }}", context=data)) == 20 * 2890


def test_a_set_value_whose_text_would_be_huge_is_refused() -> None:
    data = {"t": "a" * 60_000}
    with pytest.raises(RenderError) as info:
        render_value({"x": "{{ [context.t] * 100 }}"}, scope(data), flow="f", step="s", field="set")
    assert "over the limit of 4,000,000 characters" in str(info.value)
    kept = render_value(
        {"x": "{{ [context.t] * 2 }}"}, scope(data), flow="f", step="s", field="set"
    )
    assert kept == {"x": [data["t"], data["t"]]}


def test_a_compiled_expression_has_the_render_budget_too() -> None:
    # A sweep's `audience:` runs compile_expression's callable for every contact; it
    # ran with no budget, so `map` could build 2,000 texts of 60,000 characters.
    from engine.render import compile_expression

    audience = compile_expression("context.n | map('string') | map('center', 60000) | list")
    variables = scope({"n": list(range(2000))}).variables
    tracemalloc.start()
    try:
        with pytest.raises(render_budget.TooMuchWork, match="builds over 4,000,000 characters"):
            audience(variables)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000
    assert compile_expression("context.n | length > 1")(variables) is True


def test_contact_data_is_data_never_template_source() -> None:
    hostile = "{{ ''.__class__ }}{% for i in range(9) %}x{% endfor %}"
    assert text("Oi {{ context.nome }}", {"nome": hostile}) == f"Oi {hostile}"


def test_html_email_bodies_escape_values_but_not_the_authors_markup() -> None:
    context = {"nome": "<script>alert(1)</script>"}
    assert text("<b>{{ context.nome }}</b>", context, html=True) == (
        "<b>&lt;script&gt;alert(1)&lt;/script&gt;</b>"
    )
    assert text("<b>{{ context.nome }}</b>", context) == "<b><script>alert(1)</script></b>"


# ------------------------------------------------------------------ expressions


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("context.valor > 1000", True),
        ("context.valor > 2000", False),
        ("'vip' in contact.tags", True),
        ("context.pago | default(false)", False),
        ("context.pago is defined and context.pago", False),
        ("now.hour == 10", True),
        ("run.vars.tentativa >= 2", True),
    ],
)
def test_is_true(expression: str, expected: bool) -> None:
    assert is_true(expression, scope(), flow="f", step="s", field="when") is expected


def test_evaluate_returns_typed_values() -> None:
    assert evaluate("context.valor + 1", scope(), flow="f", step="s", field="when") == 1671
    assert evaluate("context.endereco", scope(), flow="f", step="s", field="when") == {
        "cidade": "Santos"
    }


@pytest.mark.parametrize("expression", ["context.pago", "not context.pago", "context.pago == 1"])
def test_a_missing_value_in_an_expression_is_an_error_not_false(expression: str) -> None:
    with pytest.raises(RenderError) as info:
        is_true(expression, scope(), flow="cobranca", step="-", field="audience")
    assert str(info.value) == (
        "cobranca/-/audience: `context.pago` is not defined for this contact"
    )


def test_an_expression_error_names_no_line_the_designer_never_wrote() -> None:
    with pytest.raises(RenderError) as info:
        is_true("context.nota > 8", scope({"nota": "9"}), flow="f", step="decide", field="when")
    assert str(info.value) == (
        "f/decide/when: '>' not supported between instances of 'str' and 'int'"
    )


def test_expression_escapes_fail() -> None:
    with pytest.raises(RenderError, match="not allowed in templates"):
        evaluate("''.__class__.__mro__", scope(), flow="f", step="s", field="when")
    with pytest.raises(RenderError, match="`self` is not available"):
        evaluate("self", scope(), flow="f", step="s", field="when")


# ------------------------------------------------------------------ set: values


def test_render_value_walks_mappings_and_lists_and_keeps_other_scalars() -> None:
    value = {
        "saudacao": "Oi {{ contact.first_name }}",
        "total": "{{ context.valor + 1 }}",
        "cidade": "{{ context.endereco }}",
        "lista": ["{{ context.valor }} reais", 3, True, None],
        "quando": "{{ now }}",
        "dois": "{{ context.valor }} e {{ context.valor }}",
    }
    assert render_value(value, scope(), flow="f", step="s", field="set") == {
        "saudacao": "Oi Maria",
        "total": 1671,
        "cidade": {"cidade": "Santos"},
        "lista": ["1670 reais", 3, True, None],
        "quando": "2026-11-30T10:00:00-03:00",
        "dois": "1670 e 1670",
    }


def test_render_value_errors_name_the_nested_field() -> None:
    with pytest.raises(RenderError) as info:
        render_value({"a": ["ok", "{{ context.x }}"]}, scope(), flow="f", step="s", field="set")
    assert info.value.field == "set.a[1]"


# ------------------------------------------------------------------ check and cache


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("Oi {{ contact.first_name }}", None),
        ("linha 1\n{{ context.valor + }}", "line 2: unexpected 'end of print statement'"),
        ("{{ context.valor | brll }}", "line 1: no filter named `brll`; did you mean `brl`?"),
        ("{% if x is numbr %}{% endif %}", "line 1: no test named `numbr`; did you mean `number`?"),
        ("a\n\n{% include 'x' %}", "line 3: {% include %} is not available in message templates"),
    ],
)
def test_check_template_syntax(source: str, problem: str | None) -> None:
    assert check_template_syntax(source) == problem


def test_check_template_syntax_names_an_unclosed_block() -> None:
    problem = check_template_syntax("{% if x %}\nsem fim")
    assert problem is not None
    assert problem.startswith("line 2: Unexpected end of template")
    assert "'endif'" in problem


def test_check_expression_syntax() -> None:
    assert check_expression_syntax("context.valor > 1000") is None
    assert check_expression_syntax("context.valor >") == "unexpected 'end of template'"


def test_a_syntax_error_at_send_time_is_a_render_error() -> None:
    assert error("{{ context.valor | brll }}") == (
        "cobranca/lembrete/send.text: line 1: no filter named `brll`; did you mean `brl`?"
    )


def test_templates_compile_once_per_source() -> None:
    source = "cache {{ context.valor }} " + str(id(object()))
    before = render._template.cache_info()
    for _ in range(5):
        text(source)
    after = render._template.cache_info()
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 4


def test_the_time_zone_of_now_offers_its_name_not_its_class_methods() -> None:
    assert text("{{ now.tzinfo.key }}") == "America/Sao_Paulo"
    assert "not allowed in templates" in error("{{ now.tzinfo.clear_cache() }}")


class _SlowEquality:
    """A value whose every comparison moves the render's clock on by one second."""

    def __init__(self, clock: list[float]) -> None:
        self.clock, self.compared = clock, 0

    def __eq__(self, other: object) -> bool:
        self.compared += 1
        self.clock[0] += 1.0
        return False

    __hash__ = None  # type: ignore[assignment]


def test_select_with_a_test_stops_at_the_time_budget_not_after_every_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `select('in', long_list)` runs one test per item inside one filter call: 100,000
    # items tested against 100,000 took minutes on the event loop, the 5 s ignored.
    clock = [0.0]
    monkeypatch.setattr(render_budget.time, "monotonic", lambda: clock[0])
    slow = _SlowEquality(clock)
    data = {"itens": list(range(1000)), "lista": [slow]}
    message = error("{{ context.itens | select('in', context.lista) | list }}", context=data)
    assert "took over 5 s to render one message" in message
    assert slow.compared <= 6


def test_lists_built_in_a_filter_chain_count_against_the_budget() -> None:
    # 50 lists of 100,000 numbers: no text at all, but 180 MB held by one render.
    message = error("{{ ([range(100000)] * 50) | map('list') | list | length }}")
    assert "builds over 4,000,000 characters of text (or list items)" in message
    assert text("{{ (range(1000) | list | length) + (context.valor | string | length) }}") == (
        "1004"
    )


def test_sum_of_lists_stops_at_the_collection_limit_before_it_costs_memory() -> None:
    # sum() onto start=[] is one call: 1,000 lists of 2,000 items built 2,000,000.
    text("warm {{ context.valor }}")
    tracemalloc.start()
    try:
        message = error("{{ ([[1] * 2000] * 1000) | sum(start=[]) | length }}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "a collection of 100,000+" in message or "100,000 items" in message
    assert peak < 8_000_000
    assert text("{{ [1, 2, 3] | sum }} {{ [{'v': 2}, {'v': 3}] | sum(attribute='v') }}") == "6 5"
    assert text("{{ [[1], [2]] | sum(start=[]) }}") == "[1, 2]"
