"""A render error names the flow, step, field, path and kind of value, never the
contact's data: the message is logged and kept with the run after an erasure."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.errors import RenderError
from engine.models import Contact
from engine.render import RenderScope, evaluate, render_string, render_value

CPF = "123.456.789-09"
PHONE = "+5511987650001"
EMAIL = "titular.sigilo@example.com"
NAME = "Josefina Sigilosa"
BORN = "nasceu-sigilo"
SECRETS = (CPF, PHONE, EMAIL, NAME, BORN, "Josefina", "98765", "98765432109876543210", "Bia")
CONTACT = Contact(
    id="c-1",
    phone=PHONE,
    email=EMAIL,
    name=NAME,
    context={
        "cpf": CPF,
        "renda": 98765432109876543210,
        "nascimento": BORN,
        "filhos": ["Bia", "Caio"],
        "precos": {"padrao": 10},
    },
)
SCOPE = RenderScope(
    contact=CONTACT,
    context=CONTACT.context,
    run={"id": "run-1", "flow": "cobranca", "step": "aviso", "vars": {"protocolo": 98765}},
    now=datetime(2026, 11, 30, 13, tzinfo=UTC),
    timezone=ZoneInfo("America/Sao_Paulo"),
)


def render_error(source: str) -> str:
    with pytest.raises(RenderError) as info:
        render_string(source, SCOPE, flow="cobranca", step="aviso", field="send.text")
    return str(info.value)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{{ context.cpf | brl }}", "`brl` needs a number, got a string that is not one"),
        ("{{ contact.name | brl }}", "`brl` needs a number, got a string that is not one"),
        ("{{ context.filhos | brl }}", "`brl` needs a number, got a list"),
        ("{{ contact.email | phone }}", "`phone` needs a phone number like +5511999999999"),
        ("{{ context.renda | first_name }}", "`first_name` needs a name (a string), got a number"),
        ("{{ context.renda | phone }}", "`phone` needs a phone number (a string), got a number"),
        ("{{ context.nascimento | date }}", "`date` needs a date: the string is not an ISO-8601"),
        ("{{ context.renda | date }}", "`date` needs a date: the number is past the year 9999"),
        ("{{ context.filhos.index(contact.name) }}", "is not in list"),
        ("{{ context.filhos.index(run.vars.protocolo) }}", "is not in list"),
        ("{{ context.precos[contact.phone] }}", "`context.precos[…]` is not defined"),
        ("{{ context.filhos[0].x.y }}", "is not defined"),
    ],
)
def test_a_render_error_says_what_is_wrong_without_the_contacts_data(
    source: str, says: str
) -> None:
    message = render_error(source)

    assert message.startswith("cobranca/aviso/send.text: ")
    assert says in message
    assert not [secret for secret in SECRETS if secret in message]


@pytest.mark.parametrize("pt_br_filter", ["brl", "date", "first_name", "phone"])
def test_a_filter_given_a_missing_value_names_its_path(pt_br_filter: str) -> None:
    message = render_error(f"{{{{ context.vencimento | {pt_br_filter} }}}}")

    assert message.endswith("`context.vencimento` is not defined for this contact")


def test_set_values_and_expressions_keep_the_data_out_too() -> None:
    with pytest.raises(RenderError) as info:
        render_value({"x": "{{ context.cpf | brl }}"}, SCOPE, flow="f", step="s", field="set")
    with pytest.raises(RenderError) as other:
        evaluate("context.filhos.index(contact.email)", SCOPE, flow="f", step="s", field="when")

    for message in (str(info.value), str(other.value)):
        assert not [secret for secret in SECRETS if secret in message]


def test_a_path_the_flow_spells_is_kept_even_when_a_value_has_the_same_text() -> None:
    # The value "boleto" is data; the key `boleto` is the flow's own name.
    contact = Contact(id="c-2", context={"forma": "boleto", "boleto": {}})
    scope = RenderScope(
        contact=contact,
        context=contact.context,
        run={"id": "r", "flow": "f", "step": "s", "vars": {}},
        now=datetime(2026, 11, 30, 13, tzinfo=UTC),
        timezone=ZoneInfo("America/Sao_Paulo"),
    )
    with pytest.raises(RenderError) as info:
        render_string("{{ context.boleto.valor }}", scope, flow="f", step="s", field="t")

    assert "`context.boleto.valor` is not defined for this contact" in str(info.value)
