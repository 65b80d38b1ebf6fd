"""What Interflow's send-message document requires of a body, as the fake checks it.

``problems_in`` answers the body (when it is valid) and the ``(field, message)`` pairs
that become a ``VALIDATION_ERROR``'s ``details``, in the document's words
(``"Campo obrigatório"``). The content of each type must have exactly the fields of
the document's example for it; unknown fields are refused so an adapter's typo shows.
"""

from __future__ import annotations

import json
import re
from typing import Any

import phonenumbers

TYPES = ("text", "image", "video", "audio", "document", "location", "template")
REQUIRED = "Campo obrigatório"
Problems = list[tuple[str, str]]

_TOP_FIELDS = frozenset({"channel_id", "to", "type", "content"})
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TO = re.compile(r"^\d{8,15}$")
# WhatsApp's template language codes, as the document's ``pt_BR``: en, pt_BR, fil, zh_HK.
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_CONTENT_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # required, optional
    "text": ({"text"}, set()),
    "image": ({"url"}, {"caption"}),
    "video": ({"url"}, {"caption"}),
    "audio": ({"url"}, set()),
    "document": ({"url"}, {"filename", "caption"}),
    "location": ({"latitude", "longitude"}, {"name", "address"}),
    "template": ({"name", "language", "components"}, set()),
}


def problems_in(content_type: str, raw: bytes) -> tuple[dict[str, Any] | None, Problems]:
    """The body if it is valid, and every problem found (empty when valid)."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        return None, [("Content-Type", "Deve ser application/json")]
    body = _json(raw)
    if not isinstance(body, dict):
        return None, [("body", "Deve ser um objeto JSON")]
    problems: Problems = []
    for name in ("channel_id", "to", "type", "content"):
        if name not in body or body[name] is None:
            problems.append((name, REQUIRED))
    problems += [(name, "Campo não permitido") for name in sorted(set(body) - _TOP_FIELDS)]
    channel_id, to, kind, content = (body.get(n) for n in ("channel_id", "to", "type", "content"))
    if channel_id is not None and not (isinstance(channel_id, str) and _UUID.match(channel_id)):
        problems.append(("channel_id", "Deve ser um UUID"))
    if to is not None and not (isinstance(to, str) and _TO.match(to) and _e164(to)):
        problems.append(("to", f"Número inválido: {to!r}; use DDI e DDD, só dígitos"))
    if kind is not None and kind not in TYPES:
        problems.append(("type", f"Deve ser um de: {', '.join(TYPES)}"))
    if content is not None and not isinstance(content, dict):
        problems.append(("content", "Deve ser um objeto"))
    elif isinstance(content, dict) and kind in TYPES:
        problems += _content_problems(str(kind), content)
    return (body if not problems else None), problems


def _content_problems(kind: str, content: dict[str, Any]) -> Problems:
    required, optional = _CONTENT_FIELDS[kind]
    problems: Problems = [
        (f"content.{name}", REQUIRED) for name in sorted(required) if content.get(name) is None
    ]
    problems += [
        (f"content.{name}", "Campo não permitido")
        for name in sorted(set(content) - required - optional)
    ]
    for name in sorted((required | optional) & set(content)):
        value = content[name]
        if value is None:
            continue
        why = _field_problem(kind, name, value)
        if why is not None:
            problems.append((f"content.{name}", why))
    return problems


def _field_problem(kind: str, name: str, value: Any) -> str | None:
    if name in ("latitude", "longitude"):
        bound = 90 if name == "latitude" else 180
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not -bound <= value <= bound:
            return f"Deve ser um número entre -{bound} e {bound}"
        return None
    if name == "components":
        return _components_problem(value)
    if not isinstance(value, str) or not value.strip():
        return "Deve ser um texto não vazio"
    if name == "url" and not value.startswith(("https://", "http://")):
        return "Deve ser uma URL http(s)"
    if name == "language" and kind == "template" and not _LANGUAGE.match(value):
        return "Deve ser um código de idioma do WhatsApp, como pt_BR"
    return None


def _components_problem(components: Any) -> str | None:
    if not isinstance(components, list):
        return "Deve ser uma lista"
    for index, component in enumerate(components):
        if not isinstance(component, dict) or component.get("type") != "body":
            return f"[{index}]: deve ser um objeto com type body"
        parameters = component.get("parameters")
        if not isinstance(parameters, list) or set(component) != {"type", "parameters"}:
            return f"[{index}]: deve ter type e uma lista parameters"
        for p_index, parameter in enumerate(parameters):
            text = parameter.get("text") if isinstance(parameter, dict) else None
            if (
                not isinstance(parameter, dict)
                or parameter.get("type") != "text"
                or set(parameter) != {"type", "text"}
                or not isinstance(text, str)
            ):
                return f"[{index}].parameters[{p_index}]: deve ser {{type: text, text: ...}}"
    return None


def _e164(digits: str) -> bool:
    """A number with its country code, as the document's 5511999999999: one that left
    it out (11999999999) reads as another country's number, and not a valid one."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(f"+{digits}", None))
    except phonenumbers.NumberParseException:
        return False


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
