"""WhatsApp's content limits (FLOW_FORMAT.md), in one place: ``engine.content`` checks
rendered content against them and the flow model puts the fixed counts in the JSON
Schema. Lengths are characters (code points); media sizes decimal bytes."""

from __future__ import annotations

MEDIA_BYTES = {  # decoded size of a base64 payload, per kind (WhatsApp)
    "image": 5_000_000,
    "video": 16_000_000,
    "audio": 16_000_000,
    "document": 100_000_000,
    "sticker": 100_000,
}
TEXT_MAX = 4096
BODY_MAX = 1024  # interactive body, and a template's body
HEADER_MAX = FOOTER_MAX = 60
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
LIST_SECTIONS_MAX = LIST_ROWS_MAX = 10
LIST_BUTTON_MAX = 20
ROW_TITLE_MAX = SECTION_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
