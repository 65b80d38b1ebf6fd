"""The contract of Altu's Zenvia outbound API, from its document
(``/work/shared/providers/altu-zenvia-outbound.txt``): the request rules the fake
enforces and the document's example bodies, verbatim.

``contract_problem`` answers in Portuguese, like Altu; the rules it applies are listed
in ``tests.fakes.altu``. Where the document is silent the fake is strict (unknown
fields are errors), so a misspelt field in the adapter shows up in tests.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

TOP_LEVEL = frozenset(
    {
        "destination",
        "templateId",
        "context",
        "fields",
        "externalId",
        "restartContact",
        "inactivityTime",
        "contents",
    }
)
CONTENT_FIELDS: dict[str, frozenset[str]] = {
    "file": frozenset({"type", "fileUrl", "fileMimeType", "fileCaption", "fileName"}),
    "button": frozenset({"type", "header", "body", "footer", "buttons"}),
    "list": frozenset({"type", "header", "body", "footer", "button", "sections"}),
    "location": frozenset({"type", "latitude", "longitude", "name", "address", "url"}),
}
MAX_BUTTONS = 3
MAX_LIST_BUTTON = 20
MAX_ROWS = 10
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})  # webp: stickers
DESTINATION = re.compile(r"^[0-9]{10,11}$")
MIME_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+$")


def contract_problem(body: Any) -> str | None:
    """What is wrong with a request body by the document, in Altu's words; None if valid."""
    if not isinstance(body, dict):
        return "o corpo deve ser um objeto JSON"
    unknown = sorted(set(body) - TOP_LEVEL)
    if unknown:
        return f"atributo(s) desconhecido(s): {', '.join(unknown)}"
    destination = body.get("destination")
    if destination is None:
        return "destination é obrigatório"
    if not isinstance(destination, str) or not DESTINATION.match(destination):
        return "destination deve ser o número de WhatsApp com DDD, só dígitos (ex.: 35988001234)"
    if ("templateId" in body) == ("contents" in body):
        return "informe templateId (template) ou contents (notification), um dos dois"
    return (
        _template_problem(body)
        or _options_problem(body)
        or (_contents_problem(body["contents"]) if "contents" in body else None)
    )


def _template_problem(body: dict[str, Any]) -> str | None:
    if "templateId" not in body:
        return "fields só vale com templateId" if "fields" in body else None
    if not _text(body["templateId"]):
        return "templateId deve ser o ID do template (texto)"
    fields = body.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        return "fields deve ser um objeto com chaves e valores (texto)"
    return None


def _options_problem(body: dict[str, Any]) -> str | None:
    if "context" in body and not isinstance(body["context"], dict):
        return "context deve ser um objeto"
    if "externalId" in body and not _text(body["externalId"]):
        return "externalId deve ser um texto"
    if "restartContact" in body and not isinstance(body["restartContact"], bool):
        return "restartContact deve ser booleano"
    minutes = body.get("inactivityTime", 0)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 0:
        return "inactivityTime deve ser um número inteiro de minutos (>= 0)"
    return None


def _contents_problem(contents: Any) -> str | None:
    if not isinstance(contents, list) or not contents:
        return "contents deve ser uma lista com ao menos um conteúdo"
    for index, item in enumerate(contents):
        where = f"contents[{index}]"
        if not isinstance(item, dict) or item.get("type") not in CONTENT_FIELDS:
            return f"{where}.type deve ser file, button, list ou location"
        unknown = sorted(set(item) - CONTENT_FIELDS[item["type"]])
        if unknown:
            return f"{where}: atributo(s) desconhecido(s): {', '.join(unknown)}"
        check = {
            "file": _file_problem,
            "button": _button_problem,
            "list": _list_problem,
            "location": _location_problem,
        }[item["type"]]
        problem = check(item, where)
        if problem is not None:
            return problem
    return None


def _file_problem(item: dict[str, Any], where: str) -> str | None:
    if not _url(item.get("fileUrl")):
        return f"{where}.fileUrl deve ser a URL (http/https) do arquivo"
    mime = item.get("fileMimeType")
    if not isinstance(mime, str) or not MIME_TYPE.match(mime):
        return f"{where}.fileMimeType deve ser um MIME type (ex.: video/mp4)"
    if mime.lower().startswith("image/") and mime.lower() not in IMAGE_TYPES:
        return f"{where}.fileMimeType {mime} não é aceito: imagens image/jpeg ou image/png"
    return _optional_texts(item, where, "fileCaption", "fileName")


def _button_problem(item: dict[str, Any], where: str) -> str | None:
    header = item.get("header")
    if header is not None and (
        not isinstance(header, dict)
        or header.get("type") != "file"
        or set(header) - {"type", "fileUrl"}
        or not _url(header.get("fileUrl"))
    ):
        return f'{where}.header deve ser {{"type": "file", "fileUrl": <URL>}}'
    if not _text(item.get("body")):
        return f"{where}.body é obrigatório"
    buttons = item.get("buttons")
    if not isinstance(buttons, list) or not buttons:
        return f"{where}.buttons deve ter ao menos um botão"
    if len(buttons) > MAX_BUTTONS:
        return f"{where}.buttons: limitado a {MAX_BUTTONS} botões ({len(buttons)} enviados)"
    for number, button in enumerate(buttons):
        at = f"{where}.buttons[{number}]"
        if not isinstance(button, dict) or set(button) != {"id", "title"}:
            return f"{at} deve ter id e title"
        if not (_text(button["id"]) and _text(button["title"])):
            return f"{at}: id e title devem ser textos"
    return _optional_texts(item, where, "footer")


def _list_problem(item: dict[str, Any], where: str) -> str | None:
    if not _text(item.get("body")):
        return f"{where}.body é obrigatório"
    label = item.get("button")
    if not _text(label):
        return f"{where}.button é obrigatório"
    if len(label) > MAX_LIST_BUTTON:
        return f"{where}.button: limitado a {MAX_LIST_BUTTON} caracteres ({len(label)} enviados)"
    sections = item.get("sections")
    if not isinstance(sections, list) or not sections:
        return f"{where}.sections deve ter ao menos uma seção"
    rows = 0
    for number, section in enumerate(sections):
        at = f"{where}.sections[{number}]"
        if not isinstance(section, dict) or set(section) - {"title", "rows"}:
            return f"{at} deve ter title e rows"
        problem = _optional_texts(section, at, "title")
        if problem is not None:
            return problem
        if not isinstance(section.get("rows"), list) or not section["rows"]:
            return f"{at}.rows deve ter ao menos uma opção"
        for index, row in enumerate(section["rows"]):
            row_at = f"{at}.rows[{index}]"
            if not isinstance(row, dict) or set(row) - {"id", "title", "description"}:
                return f"{row_at} deve ter id, title e description (opcional)"
            if not (_text(row.get("id")) and _text(row.get("title"))):
                return f"{row_at}: id e title são obrigatórios"
            problem = _optional_texts(row, row_at, "description")
            if problem is not None:
                return problem
        rows += len(section["rows"])
    if rows > MAX_ROWS:
        return f"{where}.sections: limitado a {MAX_ROWS} opções ({rows} enviadas)"
    return _optional_texts(item, where, "header", "footer")


def _location_problem(item: dict[str, Any], where: str) -> str | None:
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = item.get(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not -bound <= value <= bound
        ):
            return f"{where}.{name} deve ser um número entre -{bound} e {bound}"
    return _optional_texts(item, where, "name", "address", "url")


def _optional_texts(item: dict[str, Any], where: str, *names: str) -> str | None:
    for name in names:
        if name in item and not isinstance(item[name], str):
            return f"{where}.{name} deve ser texto"
    return None


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# ---------------------------------------------------------------------- the document's examples

DOC_TEMPLATE: dict[str, Any] = {
    "destination": "35988001234",
    "templateId": "3b9c0955-bdd9-00de-4135-6cfb74f5fb2e",
    "fields": {"name": "Maria", "value": "R$ 1670,00"},
    "externalId": "meu_id_1",
}
# The attribute table's body, its placeholders filled in (`false | true` -> false).
DOC_TEMPLATE_ALL_ATTRIBUTES: dict[str, Any] = {
    "destination": "35988001234",
    "templateId": "id_template",
    "context": {"status": "aprovado"},
    "fields": {"<template_chave_1>": "<template_valor_1>", "...": "..."},
    "externalId": "seu_id_mensagem",
    "restartContact": False,
    "inactivityTime": 0,
}
DOC_FILE: dict[str, Any] = {
    "destination": "11999999999",
    "contents": [
        {
            "type": "file",
            "fileUrl": "https://file-examples-com.github.io/uploads/2017/04/file_example_MP4_640_3MG.mp4",
            "fileMimeType": "video/mp4",
            "fileCaption": "Our pic :)",
            "fileName": "example.png",
        }
    ],
}
CAT = (
    "https://prime.altubots.com/chats/dev/cesar/07db4c9e4559050116d38e660548749a/uploads/"
    "3660b5fe-4c62-8979-2619-761f234892bf/20200909165426883_gato.jpg"
)
DOC_BUTTONS: dict[str, Any] = {
    "destination": "11999999999",
    "contents": [
        {
            "type": "button",
            "header": {"type": "file", "fileUrl": CAT},
            "body": "Gostaria de agendar o seu treinamento sobre a plataforma?",
            "footer": "Selecione uma das opcões abaixo:",
            "buttons": [
                {"id": "Agendar", "title": "Agendar treinamento"},
                {"id": "encerrar", "title": "Encerrar"},
                {"id": "reiniciar", "title": "Reiniciar"},
            ],
        }
    ],
}
DOC_LIST: dict[str, Any] = {
    "destination": "11999999999",
    "contents": [
        {
            "type": "list",
            "header": "Menu de Opções",
            "body": "Para finalizar, selecione o módulo do treinamento você deseja fazer?",
            "footer": "Selecione abaixo",
            "button": "Opções disponíveis",
            "sections": [
                {
                    "title": "Section Title",
                    "rows": [
                        {
                            "id": "builder",
                            "title": "Builder",
                            "description": "Aprenda a programar no Build do ALTU",
                        },
                        {
                            "id": "nlu",
                            "title": "NLU",
                            "description": "Aprenda a configurar seu NLU de forma assertiva",
                        },
                        {
                            "id": "builder_nlu",
                            "title": "Builder e NLU",
                            "description": "Aprenda a criar um assistente híbrido completo",
                        },
                    ],
                }
            ],
        }
    ],
}
DOC_LOCATION: dict[str, Any] = {
    "destination": "11999999999",
    "contents": [
        {
            "type": "location",
            "latitude": -23.54220538772733,
            "longitude": -46.65812552818576,
            "name": "SMARKIO BRASIL",
            "address": "Rua Sergipe, 475 - 5º Andar - Higienópolis, São Paulo - SP, 01243-001",
            "url": "https://www.smarkio.com.br",
        }
    ],
}
DOCUMENTED_BODIES: dict[str, dict[str, Any]] = {
    "template": DOC_TEMPLATE,
    "template_all_attributes": DOC_TEMPLATE_ALL_ATTRIBUTES,
    "file": DOC_FILE,
    "buttons": DOC_BUTTONS,
    "list": DOC_LIST,
    "location": DOC_LOCATION,
}
