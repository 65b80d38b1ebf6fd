"""Content: every kind built from a ``send:`` block, every channel limit at its
boundary with its exact message, all violations at once, and never a truncation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.content import build_content, check_limits, decoded_size
from engine.errors import ContentError, RenderError
from engine.flow.model import SendSpec
from engine.models import (
    Button,
    Buttons,
    Channel,
    Content,
    Email,
    ListMenu,
    ListRow,
    ListSection,
    Location,
    Media,
    Template,
    Text,
)
from engine.render import RenderScope

CONTACT_CONTEXT = {"valor": 1670, "lat": "-23,5505", "lon": "-46.6333", "nome": "Ana"}


def scope(context: dict[str, Any] | None = None) -> RenderScope:
    from engine.models import Contact

    contact = Contact(id="c-1", name="maria da silva", context=context or CONTACT_CONTEXT)
    return RenderScope(
        contact=contact,
        context=dict(contact.context),
        run={"id": "r-1", "flow": "cobranca", "step": "lembrete", "vars": {}},
        now=datetime(2026, 11, 30, 13, tzinfo=UTC),
        timezone=ZoneInfo("America/Sao_Paulo"),
    )


def build(
    send: dict[str, Any],
    *,
    use_template: bool = False,
    channel: Channel | None = None,
    context: dict[str, Any] | None = None,
) -> Content:
    spec = SendSpec.model_validate(send)
    return build_content(
        spec,
        scope(context),
        flow="cobranca",
        step="lembrete",
        use_template=use_template,
        channel=channel,
    )


def violations(send: dict[str, Any], **kw: Any) -> list[str]:
    with pytest.raises(ContentError) as info:
        build(send, **kw)
    return [str(v) for v in info.value.violations]


def problems(send: dict[str, Any], **kw: Any) -> list[str]:
    """The violations of ``send``; empty when it builds."""
    try:
        build(send, **kw)
    except ContentError as exc:
        return [str(v) for v in exc.violations]
    return []


def buttons(*titles: str) -> list[dict[str, str]]:
    return [{"id": f"b{i}", "title": title} for i, title in enumerate(titles)]


def menu(
    sections: list[dict[str, Any]] | None = None, button: str = "Ver", **send: Any
) -> dict[str, Any]:
    """A list-menu send block; ``send`` overrides its other keys (text, header...)."""
    block = {"button": button, "sections": sections or [{"rows": rows(1)}]}
    return {"text": "oi", "list": block, **send}


def rows(n: int, prefix: str = "r") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "title": f"Opção {i}"} for i in range(n)]


# ------------------------------------------------------------------ building


def test_text() -> None:
    assert build({"text": "Oi {{ contact.first_name }}, {{ context.valor | brl }}"}) == Text(
        body="Oi Maria, R$ 1.670,00"
    )


def test_buttons_with_header_and_footer() -> None:
    content = build(
        {
            "text": "Pagar {{ context.valor | brl }}?",
            "header": "Boleto de {{ context.nome }}",
            "footer": "Responda SAIR para sair",
            "buttons": [
                {"id": "pagar", "title": "Pagar agora"},
                {"id": "ajuda-{{ context.nome | lower }}", "title": "Ajuda"},
            ],
        }
    )
    assert content == Buttons(
        body="Pagar R$ 1.670,00?",
        header="Boleto de Ana",
        footer="Responda SAIR para sair",
        buttons=(Button(id="pagar", title="Pagar agora"), Button(id="ajuda-ana", title="Ajuda")),
    )


def test_list_menu() -> None:
    content = build(
        {
            "text": "Escolha",
            "list": {
                "button": "Ver opções",
                "sections": [
                    {
                        "title": "Pagamento",
                        "rows": [{"id": "pix", "title": "Pix", "description": "na hora"}],
                    },
                    {
                        "title": "Outros",
                        "rows": [{"id": "boleto", "title": "Boleto {{ context.nome }}"}],
                    },
                ],
            },
        }
    )
    assert content == ListMenu(
        body="Escolha",
        button="Ver opções",
        sections=(
            ListSection(
                title="Pagamento", rows=(ListRow(id="pix", title="Pix", description="na hora"),)
            ),
            ListSection(title="Outros", rows=(ListRow(id="boleto", title="Boleto Ana"),)),
        ),
    )


def test_location_renders_then_parses_coordinates() -> None:
    content = build(
        {
            "location": {
                "latitude": "{{ context.lat }}",
                "longitude": "{{ context.lon }}",
                "name": "Loja {{ context.nome }}",
            }
        }
    )
    assert content == Location(latitude=-23.5505, longitude=-46.6333, name="Loja Ana")
    assert build({"location": {"latitude": 10.5, "longitude": -20}}) == Location(
        latitude=10.5, longitude=-20.0
    )


def test_location_reports_every_coordinate_that_is_not_a_number() -> None:
    assert violations({"location": {"latitude": "{{ context.nome }}", "longitude": "x"}}) == [
        "send.location.latitude: 'Ana' is not a number",
        "send.location.longitude: 'x' is not a number",
    ]


@pytest.mark.parametrize(
    ("latitude", "longitude", "expected"),
    [
        (90, 180, []),
        (-90, -180, []),
        (
            90.001,
            0,
            ["send.location.latitude: 90.001 is out of range; latitude is between -90 and 90"],
        ),
        (
            0,
            -181,
            ["send.location.longitude: -181.0 is out of range; longitude is between -180 and 180"],
        ),
    ],
)
def test_location_range(latitude: float, longitude: float, expected: list[str]) -> None:
    location = Location(latitude=latitude, longitude=longitude)
    assert [str(v) for v in check_limits(location, "whatsapp")] == expected


def test_media_caption_is_its_own_or_the_text() -> None:
    url = "https://cdn.example/boleto-{{ context.nome | lower }}.pdf"
    assert build({"media": {"kind": "document", "url": url, "filename": "boleto.pdf"}}) == Media(
        kind="document", url="https://cdn.example/boleto-ana.pdf", filename="boleto.pdf"
    )
    assert build(
        {"text": "Seu boleto, {{ context.nome }}", "media": {"url": "https://x/a.png"}}
    ) == (Media(kind="image", url="https://x/a.png", caption="Seu boleto, Ana"))
    assert build({"media": {"url": "https://x/a.png", "caption": "{{ context.valor | brl }}"}}) == (
        Media(kind="image", url="https://x/a.png", caption="R$ 1.670,00")
    )


def test_a_base64_payload_is_sent_as_data_not_rendered() -> None:
    payload = base64.b64encode(b"{{ not a template }}").decode()
    content = build({"media": {"kind": "sticker", "base64": payload}})
    assert isinstance(content, Media)
    assert content.base64 == payload


def test_template_with_named_and_positional_params() -> None:
    template = {
        "name": "boleto_vencendo",
        "language": "pt_BR",
        "params": {
            "PrimeiroNome": "{{ contact.first_name }}",
            "Valor": "{{ context.valor | brl }}",
        },
    }
    assert build({"text": "oi", "template": template}, use_template=True) == Template(
        name="boleto_vencendo",
        language="pt_BR",
        params={"PrimeiroNome": "Maria", "Valor": "R$ 1.670,00"},
    )
    positional = {"name": "t", "params": ["{{ contact.first_name }}", "fixo"]}
    assert build({"template": positional}) == Template(name="t", params=("Maria", "fixo"))


def test_template_header_media() -> None:
    template = {
        "name": "t",
        "header_media": {"kind": "document", "url": "https://x/{{ context.nome }}"},
    }
    content = build({"template": template})
    assert isinstance(content, Template)
    assert content.header_media == Media(kind="document", url="https://x/Ana")


def test_the_template_is_sent_only_when_asked_or_alone() -> None:
    send = {"text": "oi", "buttons": buttons("Sim"), "template": {"name": "t"}}
    assert isinstance(build(send), Buttons)
    assert build(send, use_template=True) == Template(name="t")


def test_a_closed_window_without_a_template_is_an_error() -> None:
    assert violations({"text": "oi"}, use_template=True) == [
        "send.template: the 24 h window is closed and this step has no `template:` to send instead"
    ]


def test_email_escapes_values_only_when_html() -> None:
    send = {"email": {"subject": "Oi {{ context.nome }}", "body": "<p>{{ context.nome }}</p>"}}
    context = {"nome": "<b>Ana</b>"}
    assert build(send, channel="email", context=context) == Email(
        subject="Oi <b>Ana</b>", body="<p><b>Ana</b></p>"
    )
    send["email"]["html"] = True
    assert build(send, channel="email", context=context) == Email(
        subject="Oi <b>Ana</b>", body="<p>&lt;b&gt;Ana&lt;/b&gt;</p>", html=True
    )


def test_a_render_error_names_the_field_as_the_flow_file_does() -> None:
    with pytest.raises(RenderError) as info:
        build(
            {
                "text": "oi",
                "buttons": [{"id": "a", "title": "ok"}, {"id": "b", "title": "{{ context.x }}"}],
            }
        )
    assert str(info.value) == (
        "cobranca/lembrete/send.buttons[2].title: `context.x` is not defined for this contact"
    )


def test_fields_that_would_not_reach_the_contact_are_errors() -> None:
    assert violations({"text": "oi", "header": "Cabeçalho", "footer": "rodapé"}) == [
        "send.header: is not sent with text; remove it",
        "send.footer: is not sent with text; remove it",
    ]
    assert violations(
        {"text": "oi", "media": {"url": "https://x/a.png", "caption": "legenda"}}
    ) == ["send.text: is not sent with media; remove it"]


# ------------------------------------------------------------------ WhatsApp limits

LIMITS = [
    # (field, limit, send block with the field set to `v`)
    ("send.text", 4096, lambda v: {"text": v}),
    ("send.text", 1024, lambda v: {"text": v, "buttons": buttons("Sim")}),
    ("send.header", 60, lambda v: {"text": "oi", "header": v, "buttons": buttons("Sim")}),
    ("send.footer", 60, lambda v: {"text": "oi", "footer": v, "buttons": buttons("Sim")}),
    ("send.buttons[2].title", 20, lambda v: {"text": "oi", "buttons": buttons("Sim", v)}),
    ("send.buttons[1].id", 256, lambda v: {"text": "oi", "buttons": [{"id": v, "title": "Sim"}]}),
    ("send.text", 1024, lambda v: menu(text=v)),
    ("send.header", 60, lambda v: menu(header=v)),
    ("send.footer", 60, lambda v: menu(footer=v)),
    ("send.list.button", 20, lambda v: menu(button=v)),
    ("send.list.sections[1].title", 24, lambda v: menu([{"title": v, "rows": rows(1)}])),
    (
        "send.list.sections[2].rows[1].title",
        24,
        lambda v: menu(
            [{"title": "A", "rows": rows(1)}, {"title": "B", "rows": [{"id": "x", "title": v}]}]
        ),
    ),
    (
        "send.list.sections[1].rows[1].id",
        200,
        lambda v: menu([{"rows": [{"id": v, "title": "t"}]}]),
    ),
    (
        "send.media.caption",
        1024,
        lambda v: {"media": {"url": "https://x/a.png", "caption": v}},
    ),
    (
        "send.list.sections[1].rows[3].description",
        72,
        lambda v: menu([{"rows": [*rows(2), {"id": "x", "title": "t", "description": v}]}]),
    ),
]


# An accent (2 bytes in UTF-8) and an emoji beyond the BMP (4 bytes, 2 UTF-16 units)
# count one character each: WhatsApp counts characters, not bytes, outside carousels.
@pytest.mark.parametrize("char", ["é", "😀"])
@pytest.mark.parametrize(("field", "limit", "send"), LIMITS)
def test_every_limit_at_its_boundary(field: str, limit: int, send: Any, char: str) -> None:
    build(send(char * limit))  # exactly at the limit: sent as is
    assert violations(send(char * (limit + 1))) == [
        f"{field}: {limit + 1} characters; WhatsApp allows at most {limit}"
    ]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, ["send.buttons: 0 buttons; WhatsApp allows 1 to 3"]),
        (1, []),
        (3, []),
        (4, ["send.buttons: 4 buttons; WhatsApp allows 1 to 3"]),
    ],
)
def test_button_count(count: int, expected: list[str]) -> None:
    send = {"text": "oi", "buttons": buttons(*[f"Opção {i}" for i in range(count)])}
    assert problems(send) == expected


UP_TO_10 = "WhatsApp allows 1 to 10"


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ([rows(10)], []),
        ([rows(5, "a"), rows(5, "b")], []),
        ([rows(6, "a"), rows(5, "b")], [f"send.list.sections: 11 rows in total; {UP_TO_10}"]),
        ([rows(1, f"s{i}-") for i in range(10)], []),
        (
            [rows(1, f"s{i}-") for i in range(11)],
            [
                f"send.list.sections: 11 sections; {UP_TO_10}",
                f"send.list.sections: 11 rows in total; {UP_TO_10}",
            ],
        ),
    ],
)
def test_list_section_and_row_counts(sections: list[Any], expected: list[str]) -> None:
    titled = [{"title": f"Seção {i}", "rows": r} for i, r in enumerate(sections)]
    send = {"text": "oi", "list": {"button": "Ver", "sections": titled}}
    assert problems(send) == expected


def test_ids_must_be_unique() -> None:
    send = {
        "text": "oi",
        "buttons": [
            {"id": "a", "title": "1"},
            {"id": "b", "title": "2"},
            {"id": "a", "title": "3"},
        ],
    }
    assert violations(send) == [
        "send.buttons[3].id: `a` is also the id of send.buttons[1]; button ids must be unique"
    ]
    sections = [
        {"title": "A", "rows": rows(2)},
        {"title": "B", "rows": [{"id": "r1", "title": "de novo"}]},
    ]
    assert violations({"text": "oi", "list": {"button": "Ver", "sections": sections}}) == [
        "send.list.sections[2].rows[1].id: `r1` is also the id of send.list.sections[1].rows[2]; "
        "row ids must be unique"
    ]


@pytest.mark.parametrize("body", ["", "  \n ", "{{ context.vazio }}"])
def test_an_empty_text_is_a_violation(body: str) -> None:
    assert violations({"text": body}, context={"vazio": ""}) == [
        "send.text: empty after rendering; WhatsApp needs a text"
    ]


def test_all_violations_are_reported_together() -> None:
    send = {
        "text": "",
        "header": "h" * 61,
        "buttons": [
            {"id": "a", "title": "t" * 21},
            {"id": "a", "title": "ok"},
            {"id": "c", "title": ""},
            {"id": "d", "title": "ok"},
        ],
    }
    assert violations(send) == [
        "send.text: empty after rendering; WhatsApp needs a text",
        "send.header: 61 characters; WhatsApp allows at most 60",
        "send.buttons: 4 buttons; WhatsApp allows 1 to 3",
        "send.buttons[1].title: 21 characters; WhatsApp allows at most 20",
        "send.buttons[3].title: empty after rendering; WhatsApp needs a text",
        "send.buttons[2].id: `a` is also the id of send.buttons[1]; button ids must be unique",
        "send.buttons[4].title: `ok` is also the title of send.buttons[2]; "
        "button titles must be unique",
    ]
    with pytest.raises(ContentError) as info:
        build(send)
    assert str(info.value) == "; ".join(violations(send))  # one message lists them all


def test_template_params_are_checked_against_the_body_limit_and_emptiness() -> None:
    assert check_limits(Template(name="t", params=("a" * 1000, "b" * 24)), "whatsapp") == []
    over = Template(name="t", params=("a" * 1000, "b" * 25))
    assert [str(v) for v in check_limits(over, "whatsapp")] == [
        "send.template.params: 1025 characters in parameters; "
        "a WhatsApp template body allows at most 1024"
    ]
    assert violations(
        {"template": {"name": "t", "params": {"Nome": "{{ context.vazio }}"}}},
        context={"vazio": " "},
    ) == ["send.template.params.Nome: empty after rendering; WhatsApp rejects empty parameters"]


# ------------------------------------------------------------------ media sizes


@given(st.binary(max_size=300))
def test_decoded_size_matches_decoding(data: bytes) -> None:
    encoded = base64.b64encode(data).decode()
    assert decoded_size(encoded) == len(data)
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert decoded_size(wrapped) == len(data)
    assert decoded_size(f"data:image/png;base64,{encoded}") == len(data)


@pytest.mark.parametrize(("kind", "limit"), [("sticker", 100_000), ("image", 5_000_000)])
def test_media_size_limits_on_decoded_bytes(kind: Any, limit: int) -> None:
    at_limit = Media(kind=kind, base64=base64.b64encode(bytes(limit)).decode())
    assert check_limits(at_limit, "whatsapp") == []
    over = Media(kind=kind, base64=base64.b64encode(bytes(limit + 1)).decode())
    article = "an" if kind == "image" else "a"
    assert [str(v) for v in check_limits(over, "whatsapp")] == [
        f"send.media.base64: {limit + 1:,} bytes after decoding; WhatsApp allows at most "
        f"{limit:,} bytes for {article} {kind}"
    ]


def test_template_header_media_size() -> None:
    header = Media(kind="sticker", base64=base64.b64encode(bytes(100_001)).decode())
    assert [v.field for v in check_limits(Template(name="t", header_media=header), "whatsapp")] == [
        "send.template.header_media.base64"
    ]


# ------------------------------------------------------------------ channels


ROW = ListRow(id="a", title="A")


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (Buttons(body="oi", buttons=(Button(id="a", title="A"),)), "buttons"),
        (ListMenu(body="oi", button="Ver", sections=(ListSection(rows=(ROW,)),)), "list"),
        (Media(kind="image", url="https://x/a.png"), "media"),
        (Location(latitude=0, longitude=0), "location"),
        (Template(name="t"), "template"),
        (Email(subject="s", body="b"), "email"),
    ],
)
def test_sms_sends_text_only(content: Content, kind: str) -> None:
    assert [str(v) for v in check_limits(content, "sms")] == [
        f"send.{kind}: the sms channel sends text only, not {kind}"
    ]


def test_sms_text_has_no_whatsapp_length_limit_but_must_not_be_empty() -> None:
    assert check_limits(Text(body="a" * 5000), "sms") == []
    assert [str(v) for v in check_limits(Text(body=" "), "sms")] == [
        "send.text: empty after rendering; SMS needs a text"
    ]


def test_the_step_channel_overrides_the_spec() -> None:
    send = {"text": "oi", "buttons": buttons("Sim")}
    assert violations(send, channel="sms") == [
        "send.buttons: the sms channel sends text only, not buttons"
    ]
    assert violations({**send, "channel": "sms"}) == [
        "send.buttons: the sms channel sends text only, not buttons"
    ]


def test_email_channel_rules() -> None:
    assert [str(v) for v in check_limits(Text(body="oi"), "email")] == [
        "send.text: the email channel sends `email:` content only, not text"
    ]
    assert [str(v) for v in check_limits(Email(subject="Oi\r\nBcc: x@y", body=" "), "email")] == [
        "send.email.subject: a subject is one line",
        "send.email.body: empty after rendering; an e-mail needs a text",
    ]
    assert [str(v) for v in check_limits(Email(subject="s", body="b"), "whatsapp")] == [
        "send.email: WhatsApp cannot send e-mail; set `channel: email`"
    ]


# ------------------------------------------------------------------ never truncated

_SAFE_TEXT = st.text(
    st.characters(blacklist_characters="{}%#\r\n", blacklist_categories=("Cs",)), max_size=40
)


@given(_SAFE_TEXT)
def test_a_button_title_is_sent_exactly_or_refused(title: str) -> None:
    send = {"text": "oi", "buttons": [{"id": "a", "title": title}]}
    if title.strip() and len(title) <= 20:
        content = build(send)
        assert isinstance(content, Buttons)
        assert content.buttons[0].title == title
    else:
        with pytest.raises(ContentError):
            build(send)


# ------------------------------------------------------------------ what WhatsApp rejects whole


def test_button_titles_must_be_unique_after_rendering() -> None:
    # WhatsApp refuses the whole message when two reply buttons share a title.
    send = {
        "text": "oi",
        "buttons": [
            {"id": "a", "title": "Sim"},
            {"id": "b", "title": "Não"},
            {"id": "c", "title": "{{ context.titulo }}"},
        ],
    }
    assert violations(send, context={"titulo": "Sim"}) == [
        "send.buttons[3].title: `Sim` is also the title of send.buttons[1]; "
        "button titles must be unique"
    ]
    assert isinstance(build(send, context={"titulo": "Talvez"}), Buttons)


def test_a_row_id_is_at_most_200_characters() -> None:
    send = menu([{"rows": [{"id": "{{ context.id }}", "title": "Pix"}]}])
    assert isinstance(build(send, context={"id": "é" * 200}), ListMenu)
    assert violations(send, context={"id": "é" * 201}) == [
        "send.list.sections[1].rows[1].id: 201 characters; WhatsApp allows at most 200"
    ]


def test_every_section_of_a_list_with_several_needs_a_title() -> None:
    assert isinstance(build(menu([{"rows": rows(2)}])), ListMenu)  # one section: optional
    sections = [{"title": "Pagar", "rows": rows(1, "a")}, {"rows": rows(1, "b")}]
    assert violations(menu(sections)) == [
        "send.list.sections[2]: has no title; WhatsApp needs a title on every section "
        "when a list has more than one"
    ]


GIF = "data:image/gif;base64,R0lGODlhAQABAAAAACw="


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        (
            {"kind": "image", "url": "https://cdn.example/promo", "mime_type": "image/gif"},
            "send.media.mime_type: image/gif; WhatsApp sends an image only as "
            "image/jpeg or image/png",
        ),
        (
            {"kind": "image", "base64": GIF},
            "send.media.base64: a data: URL of image/gif; WhatsApp sends an image only as "
            "image/jpeg or image/png",
        ),
        (
            {"kind": "sticker", "url": "https://cdn.example/figurinha.png?v=2"},
            "send.media.url: a .png file (image/png); WhatsApp sends a sticker only as image/webp; "
            "set `kind: image`",
        ),
        (
            {"kind": "video", "url": "https://cdn.example/v", "filename": "aula.MOV"},
            "send.media.filename: a .mov file (video/quicktime); WhatsApp sends a video only "
            "as video/mp4 or video/3gpp",
        ),
    ],
)
def test_a_media_type_whatsapp_does_not_take_is_refused(
    media: dict[str, Any], expected: str
) -> None:
    assert violations({"media": media}) == [expected]


@pytest.mark.parametrize(
    "media",
    [
        {"kind": "image", "url": "https://cdn.example/a.JPG"},
        {"kind": "image", "url": "https://cdn.example/a", "mime_type": "image/PNG; q=1"},
        {"kind": "video", "url": "https://cdn.example/a.3gp"},
        {"kind": "video", "url": "https://cdn.example/a", "mime_type": "video/3gp"},
        {"kind": "sticker", "url": "https://cdn.example/a.webp"},
        {"kind": "image", "url": "https://cdn.example/foto.php?id=3"},  # type unknown here
        {"kind": "document", "url": "https://cdn.example/boleto.gif"},  # any file
    ],
)
def test_media_types_whatsapp_takes_are_sent(media: dict[str, Any]) -> None:
    assert isinstance(build({"media": media}), Media)


def test_a_template_header_file_type_is_checked() -> None:
    send = {
        "template": {
            "name": "boleto",
            "header_media": {"kind": "image", "url": "https://cdn.example/boleto.gif"},
        }
    }
    assert violations(send) == [
        "send.template.header_media.url: a .gif file (image/gif); WhatsApp sends an image "
        "only as image/jpeg or image/png"
    ]


@pytest.mark.parametrize(
    ("send", "field"),
    [
        ({"media": {"url": "https://x/a.png", "caption": "{{ context.c }}"}}, "send.media.caption"),
        (
            {"text": "{{ context.c }}", "media": {"kind": "video", "url": "https://x/a.mp4"}},
            "send.text",
        ),
    ],
)
def test_a_media_caption_is_at_most_1024_characters(send: dict[str, Any], field: str) -> None:
    content = build(send, context={"c": "é" * 1024})
    assert isinstance(content, Media)
    assert content.caption == "é" * 1024
    assert violations(send, context={"c": "é" * 1025}) == [
        f"{field}: 1025 characters; WhatsApp allows at most 1024"
    ]


@pytest.mark.parametrize("kind", ["audio", "sticker"])
def test_audio_and_stickers_carry_no_caption(kind: str) -> None:
    # WhatsApp shows no caption under an audio or a sticker: it would never be read.
    url = "https://x/a.webp" if kind == "sticker" else "https://x/a.ogg"
    assert violations({"media": {"kind": kind, "url": url, "caption": "Ouça"}}) == [
        f"send.media.caption: WhatsApp shows no caption with {'an' if kind == 'audio' else 'a'} "
        f"{kind}; remove it, or send the text in a step of its own"
    ]
    assert violations({"text": "Ouça", "media": {"kind": kind, "url": url}}) == [
        f"send.text: WhatsApp shows no caption with {'an' if kind == 'audio' else 'a'} "
        f"{kind}; remove it, or send the text in a step of its own"
    ]
    assert isinstance(build({"media": {"kind": kind, "url": url}}), Media)


@pytest.mark.parametrize(
    "value", ["Rua A, 10\nApto 3", "Total:\tR$ 10", "R$ 10     (à vista)", "a\r\nb"]
)
def test_a_template_parameter_is_one_line_without_tabs_or_long_runs_of_spaces(
    value: str,
) -> None:
    # WhatsApp refuses the template message (error 132018) for such a parameter.
    send = {"template": {"name": "t", "params": {"Endereco": "{{ context.e }}"}}}
    assert violations(send, context={"e": value}) == [
        "send.template.params.Endereco: has a line break, a tab or more than 4 spaces in "
        "a row; WhatsApp refuses such template parameters"
    ]
    assert isinstance(build(send, context={"e": "Rua A, 10    Apto 3"}), Template)


@pytest.mark.parametrize("field", ["header", "footer"])
@pytest.mark.parametrize(
    "make",
    [lambda extra: {"text": "oi", "buttons": buttons("Sim"), **extra}, lambda extra: menu(**extra)],
)
def test_a_header_or_footer_rendered_empty_is_refused(field: str, make: Any) -> None:
    # WhatsApp refuses an interactive message whose header or footer text is empty.
    send = make({field: "{{ context.promo }}"})
    assert violations(send, context={"promo": " "}) == [
        f"send.{field}: empty after rendering; WhatsApp needs a text"
    ]
    assert build(send, context={"promo": "Black Friday"}) is not None


@pytest.mark.parametrize(
    ("channel", "send"),
    [
        ("sms", {"text": "Seu boleto vence hoje"}),
        ("email", {"email": {"subject": "Boleto", "body": "Vence hoje"}}),
    ],
)
def test_a_template_beside_sms_or_e_mail_content_is_refused(
    channel: Channel, send: dict[str, Any]
) -> None:
    # The window rule never picks it off WhatsApp: it would never be sent.
    template = {"name": "boleto_vencendo", "params": {"Valor": "R$ 10,00"}}
    assert violations({**send, "template": template}, channel=channel) == [
        f"send.template: WhatsApp templates are not sent by {channel}; remove it"
    ]


@pytest.mark.parametrize(
    ("url", "kind"),
    [("https://cdn.example/boleto.pdf", "document"), ("https://cdn.example/recado.mp3", "audio")],
)
def test_a_file_sent_as_an_image_by_the_default_kind_says_which_kind_to_set(
    url: str, kind: str
) -> None:
    # `kind` defaults to image: a boleto PDF without `kind: document` would go as a
    # broken image.
    [problem] = violations({"media": {"url": url}})
    assert problem.startswith("send.media.url: a .")
    assert problem.endswith(
        f"WhatsApp sends an image only as image/jpeg or image/png; set `kind: {kind}`"
    )


@pytest.mark.parametrize(
    "url", ["boletos/2026-11.pdf", "C:\\boletos\\b.pdf", "file:///home/ana/b.pdf", "https://", " "]
)
def test_a_media_url_that_is_not_a_web_address_is_refused(url: str) -> None:
    # Every vendor fetches the file from a public link: a path never arrives.
    send = {"media": {"kind": "document", "url": "{{ context.link }}", "filename": "b.pdf"}}
    assert violations(send, context={"link": url}) == [
        f"send.media.url: {url!r} is not a web address; WhatsApp fetches the file from an "
        "http(s):// link (or give the file as `base64:`)"
    ]
    assert isinstance(build(send, context={"link": "https://cdn.example/b.pdf"}), Media)
