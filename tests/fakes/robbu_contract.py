"""What Robbu's SendMessage accepts, per /work/shared/providers/robbu-sendmessage.txt:
the field names, types and limits the fake (``tests.fakes.robbu``) enforces.

``send_problem`` returns the words of a 400 answer, or None for a body Robbu takes.
Where the document quotes Robbu (a missing ``text``) the words are Robbu's own.

Every object may carry only the field names the document's examples spell (exactly,
with their case: ``InAttendance`` but ``recentContactLastHours``). Robbu itself
(ASP.NET) would ignore a misspelt field and send the message without it (no
template parameters, no wallet); the fake refuses it, so an adapter typo shows up.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

NULL_REFERENCE = "Object reference not set to an instance of an object."
JOKER_LIMITS = (300, 300, 300, 300, 3000)  # characters of joker 1-4 and joker 5
# The field names of every object in the document's examples.
TOP_LEVEL = frozenset(
    {
        "invenioPrivateToken",
        "text",
        "emailSubject",
        "channel",
        "templateName",
        "attendantUserName",
        "templateParameters",
        "source",
        "destination",
        "discardSettings",
        "contact",
        "voiceSettings",
        "files",
    }
)
FIELDS = {
    "source": frozenset({"countryCode", "phoneNumber", "prospect"}),
    "destination": frozenset({"countryCode", "phoneNumber", "email", "prospect"}),
    "discardSettings": frozenset({"recentContactLastHours", "InAttendance"}),
    "contact": frozenset(
        {"name", "customCode", "id", "tag", "jokers", "walletClientCode", "updateIfExists"}
    ),
    "voiceSettings": frozenset({"callId"}),
}
FILE_FIELDS = frozenset({"address", "base64", "name"})


def send_problem(body: dict[str, Any] | None, private_token: str) -> str | None:
    """Why Robbu would answer 400 to ``body``, or None when it takes it."""
    if body is None:
        return "The request is invalid: the body must be a JSON object."
    if body.get("text") is None:
        return NULL_REFERENCE  # the document: "text" must be present, even empty
    token = body.get("invenioPrivateToken")
    if not isinstance(token, str) or not secrets.compare_digest(
        token.encode(), private_token.encode()
    ):
        return "invenioPrivateToken is missing or invalid"
    for name in ("text", "emailSubject", "templateName", "attendantUserName"):
        if not isinstance(body.get(name, ""), str):
            return f"{name} must be a string"
    channel = body.get("channel")
    if channel not in (1, 2, 3) or isinstance(channel, bool):
        return "channel must be 1 (e-mail), 2 (SMS) or 3 (WhatsApp)"
    return (
        _unknown_fields(body)
        or _parameters_problem(body.get("templateParameters", []))
        or _line_problem(body.get("source"), "source", required=False)
        or _destination_problem(body.get("destination"), channel)
        or _discard_problem(body.get("discardSettings"))
        or _contact_problem(body.get("contact"))
        or _voice_problem(body.get("voiceSettings"))
        or _files_problem(body.get("files", []), bool(body.get("templateName")))
        or _nothing_to_send(body, channel)
    )


def _unknown_fields(body: dict[str, Any]) -> str | None:
    """The first object with a field the document does not name, and that field."""
    objects: list[tuple[str, Any, frozenset[str]]] = [("", body, TOP_LEVEL)]
    objects += [(f"{name}.", body.get(name), fields) for name, fields in FIELDS.items()]
    files = body.get("files")
    if isinstance(files, list):
        objects += [(f"files[{i}].", item, FILE_FIELDS) for i, item in enumerate(files)]
    for where, found, fields in objects:
        # Objects of another type are refused by the checks of their contents.
        unknown = sorted(set(found) - fields) if isinstance(found, dict) else []
        if unknown:
            return (
                f"unknown field(s) {', '.join(where + n for n in unknown)}; SendMessage "
                f"takes {', '.join(where + n for n in sorted(fields))}"
            )
    return None


def _parameters_problem(parameters: Any) -> str | None:
    if not isinstance(parameters, list):
        return "templateParameters must be a list"
    for item in parameters:
        if not isinstance(item, dict) or set(item) != {"parameterName", "parameterValue"}:
            return "each templateParameters item has exactly parameterName and parameterValue"
        if not all(isinstance(v, str) for v in item.values()):
            return "parameterName and parameterValue must be strings"
        if _library_url_without_extension(item["parameterValue"]):
            # The carousel note: a media-library URL is processed only with its extension.
            return (
                f"parameterValue {item['parameterValue']!r}: URL da Biblioteca de Mídias sem "
                "a extensão do arquivo ao final"
            )
    return None


def _library_url_without_extension(value: str) -> bool:
    parts = urlsplit(value.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host.endswith(".robbu.global"):
        return False
    last = parts.path.rstrip("/").rpartition("/")[2]
    return "/file/" in parts.path and bool(last) and "." not in last.strip(".")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _line_problem(line: Any, name: str, *, required: bool) -> str | None:
    if line is None and not required:
        return None
    if not isinstance(line, dict):
        return f"{name} must be an object"
    if not _integer(line.get("countryCode")) or not _integer(line.get("phoneNumber")):
        return f"{name}.countryCode and {name}.phoneNumber must be numbers"
    if line["countryCode"] == 55 and len(str(line["phoneNumber"])) not in (10, 11):
        # The document: the country code apart, PhoneNumber "com DDD" (11999999999).
        return (
            f"{name}.phoneNumber must be the DDD and the number, without the country code "
            f"(10 or 11 digits), not {line['phoneNumber']}"
        )
    if "prospect" in line and not isinstance(line["prospect"], bool):
        return f"{name}.prospect must be true or false"
    return None


def _destination_problem(destination: Any, channel: int) -> str | None:
    if not isinstance(destination, dict):
        return "destination is required"
    if channel == 1:
        email = destination.get("email")
        if not isinstance(email, str) or "@" not in email:
            return "destination.email is required for channel 1 (e-mail)"
        return None
    return _line_problem(destination, "destination", required=True)


def _discard_problem(discard: Any) -> str | None:
    if discard is None:
        return None
    if not isinstance(discard, dict):
        return "discardSettings must be an object"
    hours = discard.get("recentContactLastHours", 0)
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 0:
        return "discardSettings.recentContactLastHours must be a whole number of hours"
    if not isinstance(discard.get("InAttendance", False), bool):
        return "discardSettings.InAttendance must be true or false"
    return None


def _contact_problem(contact: Any) -> str | None:
    if contact is None:
        return None
    if not isinstance(contact, dict):
        return "contact must be an object"
    for name in ("name", "customCode", "id", "tag", "walletClientCode"):
        if not isinstance(contact.get(name, ""), str):
            return f"contact.{name} must be a string"
    if not isinstance(contact.get("updateIfExists", False), bool):
        return "contact.updateIfExists must be true or false"
    jokers = contact.get("jokers", [])
    if not isinstance(jokers, list) or len(jokers) > len(JOKER_LIMITS):
        return "contact.jokers must be a list of at most 5 strings"
    for index, (joker, limit) in enumerate(zip(jokers, JOKER_LIMITS, strict=False)):
        if not isinstance(joker, str):
            return f"contact.jokers[{index}] must be a string"
        if len(joker) > limit:
            return f"contact.jokers[{index}] is longer than {limit} characters"
    return None


def _voice_problem(voice: Any) -> str | None:
    if voice is None:
        return None
    if not isinstance(voice, dict) or not isinstance(voice.get("callId", ""), str):
        return "voiceSettings must be an object with the voice Call ID as callId (a string)"
    return None


def _files_problem(files: Any, template: bool) -> str | None:
    if not isinstance(files, list):
        return "files must be a list"
    if template and len(files) > 1:
        return "a template (HSM) takes at most 1 file per send"
    for index, item in enumerate(files):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k, ""), str) for k in ("address", "base64", "name")
        ):
            return f"files[{index}] needs address, base64 and name as strings"
        if not item.get("address") and not item.get("base64"):
            return f"files[{index}] needs an address or base64"
        name = item.get("name", "")
        if "." not in name.strip(".") or name.endswith("."):
            return f"files[{index}].name needs the file name with its extension"
    return None


def _nothing_to_send(body: dict[str, Any], channel: int) -> str | None:
    if channel == 1 and not body.get("emailSubject"):
        return "emailSubject is required for channel 1 (e-mail)"
    if not (body.get("text") or body.get("templateName") or body.get("files")):
        return "nothing to send: text, templateName and files are all empty"
    return None
