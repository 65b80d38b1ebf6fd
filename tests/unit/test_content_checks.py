"""`disparo check` applies the send-time channel rules and WhatsApp limits to what the
flow file writes out, and leaves templated strings to send time."""

from __future__ import annotations

import pytest

from engine.check import flow_checks
from engine.content_checks import content_limits
from engine.errors import FlowError
from engine.flow.loader import load_flow_text

HEAD = "flow: f\ndefaults: {provider: sandbox}\nstart: a\nsteps:\n"  # steps from line 5
END = "    next: fim\n  fim: {end: completed}\n"


def problems(step: str) -> list[str]:
    with pytest.raises(FlowError) as caught:
        load_flow_text(HEAD + step + END, "f.yaml", extra_checks=[content_limits])
    return [str(p) for p in caught.value.problems]


def passes(step: str) -> None:
    load_flow_text(HEAD + step + END, "f.yaml", extra_checks=[content_limits])


def test_button_limits_are_reported_where_the_file_breaks_them() -> None:
    assert problems(
        "  a:\n    send:\n      text: Escolha\n      buttons:\n"
        "        - {id: pagar, title: Pagar agora com Pix copia e cola}\n"
        "        - {id: pagar, title: 2ª via}\n"
        "        - {id: c, title: C}\n        - {id: d, title: D}\n"
    ) == [
        "f.yaml:8:7: send.buttons in step `a`: 4 buttons; WhatsApp allows 1 to 3",
        "f.yaml:9:30: send.buttons[1].title in step `a`: 32 characters; WhatsApp allows at most 20",
        "f.yaml:10:16: send.buttons[2].id in step `a`: `pagar` is also the id of "
        "send.buttons[1]; button ids must be unique",
    ]


def test_list_limits_count_rows_across_sections() -> None:
    rows = "".join(f"            - {{id: r{i}, title: Opção {i}}}\n" for i in range(11))
    found = problems(
        "  a:\n    send:\n      text: Menu\n      list:\n"
        "        button: Ver todas as opções já\n        sections:\n"
        "          - title: Uma seção de título longo demais\n            rows:\n" + rows
    )
    assert found == [
        "f.yaml:9:17: send.list.button in step `a`: 22 characters; WhatsApp allows at most 20",
        "f.yaml:10:9: send.list.sections in step `a`: 11 rows in total; WhatsApp allows 1 to 10",
        "f.yaml:11:20: send.list.sections[1].title in step `a`: 32 characters; WhatsApp "
        "allows at most 24",
    ]


def test_templated_strings_are_left_to_send_time() -> None:
    # Rendered, these may be short or long, equal or not: only the count is known now.
    passes(
        "  a:\n    send:\n      text: '{{ contact.first_name }}, escolha'\n      buttons:\n"
        "        - {id: '{{ context.a }}', title: '{{ context.titulo_do_botao_um }}'}\n"
        "        - {id: '{{ context.a }}', title: '{{ context.titulo_do_botao_dois }}'}\n"
    )
    passes("  a:\n    send: {location: {latitude: '{{ context.lat }}', longitude: 10}}\n")


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "  a:\n    send:\n      channel: sms\n      text: Pagar?\n"
            "      buttons: [{id: pagar, title: Pagar}]\n",
            "f.yaml:9:7: send.buttons in step `a`: the sms channel sends text only, not buttons",
        ),
        (
            "  a:\n    send:\n      email: {subject: Boleto, body: 'Olá {{ contact.name }}'}\n",
            "f.yaml:7:7: send.email in step `a`: WhatsApp cannot send e-mail; set `channel: email`",
        ),
        (
            "  a:\n    send:\n      channel: email\n      text: 'Olá {{ contact.name }}'\n",
            "f.yaml:8:13: send.text in step `a`: the email channel sends `email:` content only, "
            "not text",
        ),
        (
            "  a:\n    send: {text: oi, footer: tchau}\n",
            "f.yaml:6:30: send.footer in step `a`: is not sent with text; remove it",
        ),
    ],
)
def test_content_the_channel_cannot_carry_is_a_check_error(step: str, expected: str) -> None:
    assert problems(step) == [expected]


def test_the_template_sent_when_the_window_is_closed_is_checked_too() -> None:
    assert problems(
        "  a:\n    send:\n      text: oi\n      template: {name: t, params: ['  ']}\n"
    ) == [
        "f.yaml:8:36: send.template.params[1] in step `a`: empty after rendering; WhatsApp "
        "rejects empty parameters"
    ]


def test_disparo_check_runs_the_content_limits() -> None:
    assert content_limits in flow_checks({}, None)


def test_the_fixed_text_around_a_variable_counts_towards_the_limit() -> None:
    # The words written around `{{ }}` go out with every message: over the limit on
    # their own, every send of the step fails.
    assert problems(
        "  a:\n    send:\n      text: Escolha\n      buttons:\n"
        "        - {id: pagar, title: 'Pagar com Pix copia e cola, {{ contact.first_name }}'}\n"
    ) == [
        "f.yaml:9:30: send.buttons[1].title in step `a`: 28 characters; WhatsApp allows at most 20"
    ]


def test_fixed_text_inside_a_condition_or_at_the_limit_is_left_to_send_time() -> None:
    passes(
        "  a:\n    send:\n      text: Escolha\n      buttons:\n"
        "        - {id: a, title: '{% if context.x %}Pagar com Pix copia e cola{% endif %}Pix'}\n"
        "        - {id: b, title: 'Pagar agora já, sim!{{ context.sufixo }}'}\n"  # 20 fixed
        "        - {id: c, title: 'Sim {{ context.a }}'}\n"
    )
    passes(  # equal fixed text, different variables: they may differ once rendered
        "  a:\n    send:\n      text: Escolha\n      buttons:\n"
        "        - {id: a, title: 'Sim {{ context.a }}'}\n"
        "        - {id: b, title: 'Sim {{ context.b }}'}\n"
        "        - {id: c, title: 'Sim'}\n"
    )
    passes(
        "  a:\n    send:\n      media: {kind: image, url: 'https://cdn.example/{{ context.id }}',"
        " mime_type: 'image/{{ context.tipo }}'}\n"
    )


def test_fixed_line_breaks_in_a_template_parameter_are_found_at_check_time() -> None:
    assert problems(
        "  a:\n    send:\n      template:\n        name: t\n        params:\n"
        "          - |\n            {{ context.rua }}\n            Apto {{ context.apto }}\n"
    ) == [
        "f.yaml:10:13: send.template.params[1] in step `a`: has a line break, a tab or more "
        "than 4 spaces in a row; WhatsApp refuses such template parameters"
    ]


@pytest.mark.parametrize(
    "source",
    [
        "Pagar {{ context.a }} agora",
        "  {{- context.a -}}  fim",
        "{% if context.a %}Sim{% endif %} e {{ context.b }}\n",
        "Linha 1\n{% for i in range(2) %}x{% endfor %}\nLinha 3 {{ context.a }}",
        "{% raw %}{{ literal }}{% endraw %} {{ context.b }}",
    ],
)
def test_fixed_text_is_never_longer_than_what_renders(source: str) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from engine.content_checks import fixed_text
    from engine.models import Contact
    from engine.render import RenderScope, render_string

    scope = RenderScope(
        contact=Contact(id="c"),
        context={"a": "", "b": ""},
        run={"id": "r", "flow": "f", "step": "a", "vars": {}},
        now=datetime(2026, 11, 30, tzinfo=UTC),
        timezone=ZoneInfo("America/Sao_Paulo"),
    )
    rendered = render_string(source, scope, flow="f", step="a", field="send.text")
    assert len(fixed_text(source)) <= len(rendered)
    assert all(line in rendered for line in fixed_text(source).splitlines())


def test_a_media_path_written_in_the_file_is_a_check_error() -> None:
    assert problems("  a:\n    send: {media: {kind: document, url: boletos/2026-11.pdf}}\n") == [
        "f.yaml:6:41: send.media.url in step `a`: 'boletos/2026-11.pdf' is not a web address; "
        "WhatsApp fetches the file from an http(s):// link (or give the file as `base64:`)"
    ]
    passes("  a:\n    send: {media: {kind: document, url: '{{ context.base }}/b.pdf'}}\n")
