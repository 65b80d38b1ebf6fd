"""`disparo check`'s checks that need the config: Jinja syntax, provider capabilities
and the template catalogue, each pointing at the line of the flow file."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.errors import FlowError
from engine.flow.loader import load_flow_text
from engine.flow_checks import provider_capabilities, template_catalog, template_syntax
from engine.template_catalog import TemplateCatalog
from providers.base import CONTENT_TYPES, Capabilities

CAPS = {
    "robbu_whatsapp": Capabilities(
        channels=frozenset({"whatsapp", "sms", "email"}),
        content_types=frozenset({"text", "media", "template", "email"}),
        read_receipts=True,
    ),
    "altu": Capabilities(channels=frozenset({"whatsapp"}), content_types=CONTENT_TYPES),
    "sms_only": Capabilities(
        channels=frozenset({"sms"}), content_types=frozenset({"text"}), read_receipts=False
    ),
}
CATALOG = TemplateCatalog.model_validate(
    {
        "templates": {
            "boleto_vencendo": {
                "params": ["PrimeiroNome", "Valor"],
                "providers": {"robbu_whatsapp": {"id": "boleto_v2"}, "altu": {"id": "tpl-9"}},
            }
        }
    }
)


def problems(source: str) -> list[str]:
    checks = [template_syntax, provider_capabilities(CAPS), template_catalog(CATALOG)]
    with pytest.raises(FlowError) as caught:
        load_flow_text(source, "f.yaml", providers=CAPS, extra_checks=checks)
    return [str(p) for p in caught.value.problems]


def test_a_template_that_does_not_compile_points_at_its_line() -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: altu}\nsteps:\n"
        "  a: {send: {text: 'Oi {{ contact.name }'}, next: b}\n"
        "  b:\n    branch:\n      - when: 'context.x >'\n        goto: a\n      - else: a\n"
    )

    assert found[0].startswith("f.yaml:5:")
    assert "template does not compile" in found[0]
    assert found[1].startswith("f.yaml:8:")
    assert "expression does not compile" in found[1]


def test_a_template_error_in_a_literal_block_points_at_its_own_line() -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: altu}\nsteps:\n"
        "  a:\n"
        "    send:\n"
        "      text: |\n"
        "        Oi {{ contact.first_name }}!\n"
        "        Seu boleto de {{ context.valor | brl }\n"
        "    next: a\n"
    )

    assert found == ["f.yaml:9:9: template does not compile: unexpected '}'"]


def test_a_contact_or_run_field_that_never_exists_is_named_with_the_right_one() -> None:
    # `contact.primeiro_nome` passed check and failed every send with an open window
    # (the template went out while it was closed, so simulate showed nothing wrong).
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: altu}\n"
        "triggers:\n  - cron: '0 9 * * *'\n    audience: contact.cpf is defined\n"
        "steps:\n"
        "  a:\n"
        "    send:\n"
        "      text: |\n"
        "        Oi {{ contact.first_name }}!\n"
        "        {{ contact.primeiro_nome }}, {{ contact.get('name') }} {{ run.step }}\n"
        "    next: b\n"
        "  b:\n    branch:\n      - when: \"run.resposta == 'sim'\"\n        goto: a\n"
        "      - else: a\n"
    )

    fields = "(id, phone, email, name, first_name, tags, context, timezone)"
    assert found == [
        f"f.yaml:6:15: `contact.cpf` is not a field of the contact {fields}; "
        "a key of the contact's context is `contact.context.cpf`",
        f"f.yaml:12:9: unknown field: `contact.primeiro_nome` is not a field of the contact "
        f"{fields}; did you mean `first_name`?",
        "f.yaml:16:15: `run.resposta` is not a field of the run (id, flow, step, vars)",
    ]


def test_a_variable_missing_a_brace_would_be_sent_as_written_and_is_named() -> None:
    # `{ contact.first_name }}` compiles (it is plain text to Jinja) and went out as is.
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: altu}\nsteps:\n"
        "  a:\n"
        "    send:\n"
        "      text: |\n"
        "        Oi { contact.first_name }}!\n"
        "        Seu boleto de {context.valor} vence }} hoje. {{ '{' }} a { color: red }\n"
        "        Use {% raw %}{{ nome }}{% endraw %} no modelo\n"
        "    next: a\n"
    )

    assert found == [
        "f.yaml:8:9: stray braces: `{ contact.first_name }}` would be sent as written; "
        "a variable is written `{{ contact.first_name }}`",
        "f.yaml:9:9: stray braces: `{context.valor}` would be sent as written; "
        "a variable is written `{{ context.valor }}`",
    ]


def test_a_name_set_in_the_template_is_not_taken_for_the_contact() -> None:
    text = "{% for contact in context.dependentes %}{{ contact.nome }}{% endfor %}"
    flow = "flow: f\nstart: a\ndefaults: {provider: altu}\nsteps:\n"
    flow += f"  a: {{send: {{text: '{text}'}}, next: a}}\n"
    assert load_flow_text(flow, "f.yaml", providers=CAPS, extra_checks=[template_syntax])


def test_buttons_through_a_provider_without_them_suggest_what_to_do() -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: robbu_whatsapp}\nsteps:\n"
        "  a:\n    send:\n      text: Quer pagar?\n      buttons: [{id: sim, title: Sim}]\n"
        "    next: fim\n  fim: {end: completed}\n"
    )

    assert found == [
        "f.yaml:8:7: provider `robbu_whatsapp` can't send reply buttons; use a template with "
        "quick replies, or use a provider that can: altu"
    ]


def test_a_channel_the_provider_does_not_carry_is_an_error() -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: altu}\nsteps:\n"
        "  a: {send: {channel: sms, text: oi}, next: fim}\n  fim: {end: completed}\n"
    )

    assert len(found) == 1
    assert "provider `altu` cannot send sms (it sends: whatsapp)" in found[0]


def test_waiting_for_read_on_a_provider_without_read_receipts_is_an_error() -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: sms_only, channel: sms}\nsteps:\n"
        "  a:\n    send: {text: oi}\n    on: {read: fim}\n    next: fim\n"
        "  fim: {end: completed}\n"
    )

    assert len(found) == 1
    assert found[0].startswith("f.yaml:7:10:")
    assert "reports no read receipts" in found[0]


def test_waiting_for_read_on_an_sms_step_is_an_error_whatever_the_provider_says() -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: robbu_whatsapp}\nsteps:\n"
        "  a:\n    send: {channel: sms, text: oi}\n    on: {read: fim}\n    next: fim\n"
        "  fim: {end: completed}\n"
    )

    assert found == [
        "f.yaml:7:10: SMS has no read receipts, so `read` never happens here; use `delivered` "
        "or a `timeout:`"
    ]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{name: boleto_vencend, params: {PrimeiroNome: x}}",
            "template `boleto_vencend` is not in the template catalogue (config `templates:`); "
            "did you mean `boleto_vencendo`?",
        ),
        (
            "{name: boleto_vencendo, params: {PrimeiroNome: x, Valor: y, Extra: z}}",
            "template `boleto_vencendo` has no parameter `Extra` (it takes: PrimeiroNome, Valor)",
        ),
        (
            # A provider fills the template by position: the values after the gap would
            # land in the wrong slots.
            "{name: boleto_vencendo, params: {PrimeiroNome: x}}",
            "template `boleto_vencendo` needs parameter `Valor` (it takes: PrimeiroNome, Valor)",
        ),
        (
            "{name: boleto_vencendo}",
            "template `boleto_vencendo` needs parameters `PrimeiroNome` and `Valor` "
            "(it takes: PrimeiroNome, Valor)",
        ),
        (
            "{name: boleto_vencendo, params: [x]}",
            "template `boleto_vencendo` takes 2 parameter(s), this step gives 1",
        ),
    ],
)
def test_templates_are_checked_against_the_catalogue(template: str, expected: str) -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: altu}\nsteps:\n"
        f"  a: {{send: {{template: {template}}}, next: fim}}\n  fim: {{end: completed}}\n"
    )

    assert len(found) == 1
    assert found[0].endswith(expected)


def test_a_template_parameter_spelt_in_another_case_suggests_the_right_one() -> None:
    found = problems(
        "flow: f\nstart: a\ndefaults: {provider: altu}\nsteps:\n  a:\n    send:\n"
        "      template: {name: boleto_vencendo, params: {PrimeiroNome: x, valor: y}}\n"
        "    next: a\n"
    )

    assert (
        "f.yaml:7:67: template `boleto_vencendo` has no parameter `valor` "
        "(it takes: PrimeiroNome, Valor); did you mean `Valor`?"
    ) in found


def test_a_template_without_an_id_for_the_step_provider_is_an_error() -> None:
    catalog = TemplateCatalog.model_validate(
        {"templates": {"t": {"params": [], "providers": {"altu": {"id": "x"}}}}}
    )
    source = (
        "flow: f\nstart: a\ndefaults: {provider: robbu_whatsapp}\nsteps:\n"
        "  a: {send: {template: {name: t}}, next: fim}\n  fim: {end: completed}\n"
    )
    with pytest.raises(FlowError) as caught:
        load_flow_text(source, "f.yaml", providers=CAPS, extra_checks=[template_catalog(catalog)])

    (problem,) = caught.value.problems
    assert "has no id for provider `robbu_whatsapp`" in str(problem)


def test_the_catalogue_file_is_validated_with_lines(tmp_path: Path) -> None:
    from engine.errors import ConfigError
    from engine.template_catalog import load_template_catalog

    path = tmp_path / "templates.yaml"
    path.write_text("templates:\n  t:\n    params: [a]\n    providres: {}\n")

    with pytest.raises(ConfigError) as caught:
        load_template_catalog(path)

    text = [str(p) for p in caught.value.problems]
    assert any(t.startswith(f"{path}:4:5:") and "providres" in t for t in text)


ROBBU = Capabilities(
    channels=frozenset({"whatsapp"}),
    content_types=frozenset({"text", "template"}),
    read_receipts=False,
    webhooks=False,
    attendant_conflicts_with_in_attendance=True,
)


def robbu_problems(source: str) -> list[str]:
    caps = {"robbu": ROBBU}
    with pytest.raises(FlowError) as caught:
        load_flow_text(source, "f.yaml", providers=caps, extra_checks=[provider_capabilities(caps)])
    return [str(p) for p in caught.value.problems]


def test_a_status_the_provider_never_reports_cannot_move_the_run() -> None:
    found = robbu_problems(
        "flow: f\nstart: a\ndefaults: {provider: robbu}\nsteps:\n"
        "  a:\n    send: {text: oi}\n    on: {delivered: fim, sent: fim}\n"
        "  fim: {end: completed}\n"
    )

    assert len(found) == 1
    assert "reports no statuses after `sent`, so `delivered` never happens" in found[0]


def test_a_refused_send_through_a_provider_without_webhooks_can_still_go_to_on_failed() -> None:
    # Robbu reports nothing after `sent`, but a send it refuses (contact in attendance,
    # a 400) fails the message at once: `failed` routes it to a fallback step.
    found = robbu_problems(
        "flow: f\nstart: a\ndefaults: {provider: robbu}\nsteps:\n"
        "  a:\n    send: {text: oi}\n    on: {sent: fim, failed: fim, read: fim}\n"
        "  fim: {end: completed}\n"
    )

    assert len(found) == 1
    assert found[0].startswith("f.yaml:7:34: ")
    assert "`read` never happens" in found[0]


def test_assigning_an_attendant_while_skipping_attended_contacts_is_refused() -> None:
    found = robbu_problems(
        "flow: f\nstart: a\ndefaults: {provider: robbu, rules: {in_attendance: skip}}\n"
        "steps:\n"
        "  a: {send: {text: Vou te passar para um atendente}, next: h}\n"
        "  h: {handoff: {attendant: Operador}, next: fim}\n"
        "  fim: {end: completed}\n"
    )

    assert len(found) == 1
    assert found[0].startswith("f.yaml:3:")  # defaults.rules.in_attendance
    assert "assigns attendant `Operador`" in found[0]
    assert "in_attendance: send" in found[0]


def test_the_same_flow_passes_once_the_step_sends_to_attended_contacts() -> None:
    source = (
        "flow: f\nstart: a\ndefaults: {provider: robbu, rules: {in_attendance: skip}}\n"
        "steps:\n"
        "  a:\n    send: {text: Vou te passar para um atendente}\n"
        "    rules: {in_attendance: send}\n    next: h\n"
        "  h: {handoff: {attendant: Operador}, next: fim}\n"
        "  fim: {end: completed}\n"
    )
    caps = {"robbu": ROBBU}
    loaded = load_flow_text(
        source, "f.yaml", providers=caps, extra_checks=[provider_capabilities(caps)]
    )
    assert loaded.flow.flow == "f"


URL_ONLY = {
    "iflow": Capabilities(
        channels=frozenset({"whatsapp"}),
        content_types=frozenset({"text", "media", "buttons", "template"}),
        files_per_template=0,
        media_kinds=frozenset({"image", "document"}),
        media_by_url_only=True,
        buttons_text_header=False,
        template_needs_language=True,
        template_params_named=True,
    )
}


def iflow_problems(send: str, entry: dict[str, Any] | None = None) -> list[str]:
    """The problems of a one-step flow sending ``send`` through ``iflow``, whose
    catalogue entry for template ``t`` is ``entry``."""
    catalog = TemplateCatalog.model_validate(
        {"templates": {"t": {"params": ["P"], "providers": {"iflow": entry or {"id": "t1"}}}}}
    )
    source = (
        "flow: f\nstart: a\ndefaults: {provider: iflow}\nsteps:\n"
        f"  a: {{send: {send}, next: fim}}\n  fim: {{end: completed}}\n"
    )
    checks = [provider_capabilities(URL_ONLY), template_catalog(catalog, URL_ONLY)]
    try:
        load_flow_text(source, "f.yaml", providers=URL_ONLY, extra_checks=checks)
    except FlowError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        ("{media: {kind: sticker, url: 'https://x/s.webp'}}", "can't send a sticker"),
        ("{media: {kind: image, base64: aGk=}}", "takes files by URL only"),
        (
            "{text: oi, header: Oferta, buttons: [{id: a, title: A}]}",
            "can't show a text header on reply buttons",
        ),
        (
            "{template: {name: t, language: pt_BR, params: {P: x},"
            " header_media: {url: 'https://x/a.pdf', kind: document}}}",
            "can't send a file with a template",
        ),
        ("{template: {name: t, language: pt_BR, params: [x]}}", "needs named template parameters"),
        ("{template: {name: t, params: {P: x}}}", "needs the template's language"),
    ],
)
def test_what_a_provider_refuses_inside_a_content_type(send: str, expected: str) -> None:
    messages = iflow_problems(send)
    assert len(messages) == 1, messages
    assert expected in messages[0]
    assert messages[0].startswith("f.yaml:5:")


@pytest.mark.parametrize(
    ("send", "catalogued", "expected"),
    [
        ("{template: {name: t, language: pt-BR, params: {P: x}}}", None, "write `pt_BR`"),
        ("{template: {name: t, params: {P: x}}}", "pt-br", "write `pt_BR`"),
        ("{template: {name: t, params: {P: x}}}", "Portuguese", "write it like `pt_BR`"),
    ],
)
def test_a_language_not_written_as_whatsapps_code_is_a_check_error(
    send: str, catalogued: str | None, expected: str
) -> None:
    """Interflow passes the language to WhatsApp, which knows `pt_BR` (the document's
    example) and finds no template in `pt-BR`: every send would fail at the vendor."""
    entry = {"id": "t1"} if catalogued is None else {"id": "t1", "language": catalogued}
    messages = iflow_problems(send, entry)
    assert len(messages) == 1, messages
    assert "is not a WhatsApp language code" in messages[0]
    assert expected in messages[0]
    fixed = {"id": "t1", "language": "pt_BR"}
    assert iflow_problems(send.replace("pt-BR", "pt_BR"), fixed) == []


def test_a_location_url_interflow_has_no_field_for_is_a_check_error() -> None:
    # Interflow's location document has latitude, longitude, name and address only:
    # the url would be left out of the request and never reach the contact.
    from engine.check import capabilities_of
    from engine.settings import Settings

    interflow = {"type": "interflow", "api_key": "k", "channel_id": str(uuid.UUID(int=1))}
    settings = Settings.model_validate(
        {"api_token": "t0ken-0123456789", "providers": {"iflow": interflow}}
    )
    caps = capabilities_of(settings)
    source = (
        "flow: f\nstart: a\ndefaults: {provider: iflow}\nsteps:\n"
        "  a: {send: {location: {latitude: -23.5, longitude: -46.6, url: 'https://loja.example'}},"
        " next: fim}\n  fim: {end: completed}\n"
    )
    with pytest.raises(FlowError) as caught:
        load_flow_text(source, "f.yaml", providers=caps, extra_checks=[provider_capabilities(caps)])
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:5:60: provider `iflow` can't send a location's `url`; put the link in a text "
        "of its own"
    ]
    without_url = source.replace(", url: 'https://loja.example'", "")
    load_flow_text(
        without_url, "f.yaml", providers=caps, extra_checks=[provider_capabilities(caps)]
    )


@pytest.mark.parametrize(
    ("params", "where", "words"),
    [
        ("[PrimeiroNome, PrimeiroNome]", ":3:13:", "`PrimeiroNome` is listed twice"),
        ("[PrimeiroNome, '  ']", ":3:13:", "a parameter needs a name"),
    ],
)
def test_a_catalogue_parameter_listed_twice_or_blank_is_refused(
    tmp_path: Path, params: str, where: str, words: str
) -> None:
    # Parameters go by position: listed twice, the template would get one value
    # fewer than WhatsApp approved, and the send would fail at the provider.
    from engine.errors import ConfigError
    from engine.template_catalog import load_template_catalog

    path = tmp_path / "templates.yaml"
    path.write_text(f"templates:\n  t:\n    params: {params}\n    providers: {{altu: {{id: t}}}}\n")

    with pytest.raises(ConfigError) as caught:
        load_template_catalog(path)

    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith(f"{path}{where}")
    assert words in problem
