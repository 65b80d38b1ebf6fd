"""What each key of a flow file means, in the words an editor shows on hover.

yaml-language-server shows a key's ``description`` when the designer hovers over it
or picks it from the completion list. The models carry some descriptions
themselves; this fills in every other key, so none is left unexplained (a test
fails when a key the models gain has no description here or there).
Keys are ``Model.key`` as the schema names them (``Flow`` is the root).
"""

from __future__ import annotations

from typing import Any

DESCRIPTIONS: dict[str, str] = {
    # the flow
    "Flow.concurrency": "`one` (default): a contact is in at most one open run of this flow, "
    "and a new start for them is recorded and skipped; `many`: every start runs "
    "(e.g. one run per boleto)",
    "Flow.defaults": "The provider, channel and rules every step uses unless it says otherwise",
    "Flow.description": "What the flow is for, in words for the team (disparo does not use it)",
    "Flow.timezone": "IANA zone of the flow's cron times and of contacts without a zone "
    "of their own (default: the config's `timezone`), e.g. America/Sao_Paulo",
    "Defaults.channel": "whatsapp (default), sms or email",
    "Defaults.provider": "A provider instance named in config/disparo.yaml",
    "Defaults.rules": "Contact-context rules every send applies; a step's `rules:` overrides "
    "them one by one",
    # triggers
    "ApiTrigger.api": "`{}`: `POST /v1/runs` starts this flow",
    "CronTrigger.audience": "Expression a contact must match to get a run at each fire time, "
    "e.g. \"contact.context.boleto_status == 'aberto'\" (all contacts when left out)",
    "CronTrigger.misfire_grace": "How late a fire time may be (the engine was down) and still "
    "run; default: the config's triggers.misfire_grace (1h)",
    "AfterTrigger.unless": 'Expression that excludes a contact, e.g. "contact.context.pago"',
    "EventTrigger.event": "The inbound event that starts the flow: `reply`",
    "EventTrigger.keyword": "A reply that is this word (or one of these words) starts the flow; "
    "case, accents and the punctuation around it are ignored",
    "EventTrigger.regex": "A reply matching this regular expression starts the flow",
    # steps
    "Step.description": "What the step does, in words for the team (disparo does not use it)",
    "Step.rules": "This step's rules over `defaults.rules`, one by one (`null` turns one off)",
    "Step.timeout": "Where the run goes when nothing moved it within a time: "
    "{after: 2h, goto: sms}",
    "BranchCase.when": 'Expression over contact, context, run and now, e.g. "context.valor > 1000"',
    "BranchCase.goto": "The step to go to when `when` is true",
    "BranchCase.else": "The step to go to when no case above was true (the last case)",
    "WaitFor.for": "What ends the wait: `reply` (a reply, button or choice), `delivered` "
    "(or read), `read`, or `event` (anything that comes)",
    "WaitFor.up_to": "At most this long; then the step's `timeout:` (or `next:`) applies",
    "HandoffSpec.attendant": "Who attends (Robbu's attendantUserName)",
    "HandoffSpec.until": "How long the attendance lasts when no attendance_ended event ends it",
    "InactivityRule.otherwise": "`defer` (default): send once the contact has been quiet long "
    "enough; `skip`: do not send (the step's `skipped` route)",
    "QuietHoursRule.days": "The days the range applies (every day when left out), e.g. [sat, sun]",
    # content
    "SendSpec.channel": "whatsapp (default), sms or email",
    "SendSpec.header": "Header text above the body of buttons or a list (<= 60 chars)",
    "SendSpec.footer": "Footer text under the body of buttons or a list (<= 60 chars)",
    "SendSpec.media": "A file: image, video, audio, document or sticker",
    "SendSpec.buttons": "1-3 reply buttons under `text`; a tap sends the event button.<id>",
    "SendSpec.list": "A list menu under `text`; a choice sends the event choice.<row id>",
    "SendSpec.location": "A map pin",
    "SendSpec.email": "An e-mail (subject and body); needs `channel: email`",
    "MediaSpec.kind": "image (default), video, audio, document or sticker",
    "MediaSpec.url": "Where the vendor fetches the file (http or https)",
    "MediaSpec.base64": "The file itself, base64-encoded (instead of `url`)",
    "MediaSpec.filename": "The name the contact sees (documents)",
    "MediaSpec.caption": "Text shown with the file",
    "MediaSpec.mime_type": "e.g. application/pdf (default: what the file name's extension says)",
    "ListSpec.sections": "Groups of rows (at most 10 rows in all)",
    "ListSectionSpec.rows": "The options of this section",
    "ListRowSpec.description": "A second line under the row's title (<= 72 chars)",
    "LocationSpec.latitude": "e.g. -23.5505",
    "LocationSpec.longitude": "e.g. -46.6333",
    "LocationSpec.name": "The place's name",
    "LocationSpec.address": "The place's address",
    "LocationSpec.url": "A link about the place",
    "TemplateSpec.language": "The template's language as approved, e.g. pt_BR (default: the "
    "catalogue's, config/templates.yaml)",
    "TemplateSpec.params": "The template's variables: a mapping by name "
    '({PrimeiroNome: "{{ contact.first_name }}"}) or a list in order',
    "TemplateSpec.header_media": "The file of a template whose header is an image, video or "
    "document",
    "EmailSpec.subject": "The e-mail's subject",
    "EmailSpec.body": "The e-mail's body: plain text, or HTML with `html: true`",
    "EmailSpec.html": "true: the body is HTML (default false: plain text)",
}


def describe(schema: dict[str, Any]) -> None:
    """Give each property of ``schema`` (the root ``Flow`` and its ``$defs``) that has no
    description the one above."""
    models = [("Flow", schema), *schema.get("$defs", {}).items()]
    for model, definition in models:
        for key, prop in definition.get("properties", {}).items():
            text = DESCRIPTIONS.get(f"{model}.{key}")
            if text is not None and "description" not in prop:
                prop["description"] = text
