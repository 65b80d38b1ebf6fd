"""A vendor's webhook text with a NUL character (``\\u0000``), which PostgreSQL's text
columns cannot keep: the NUL is dropped and the rest stored, on both stores alike."""

from __future__ import annotations

from pathlib import Path

from providers.altu import AltuConfig
from tests.contract.conftest import database  # noqa: F401  (the fixture: SQLite and PostgreSQL)
from tests.contract.store_kit import Database
from tests.integration.engine_kit import harness, settings_for

BODY = (
    b'{"inbound": [{"from": "+5511999998888", "type": "reply", "text": "o\\u0000i", '
    b'"id": "wamid-1"}]}'
)


async def test_a_nul_in_a_webhook_reply_is_dropped_and_the_reply_stored(
    tmp_path: Path,
    database: Database,  # noqa: F811
) -> None:
    storage = database.dsn if database.backend == "postgres" else f"sqlite:///{database.dsn}"
    async with harness(settings_for(tmp_path, storage=storage)) as h:
        outcome = await h.engine.ingest_webhook("sandbox", BODY, {})
        again = await h.engine.ingest_webhook("sandbox", BODY, {})  # the vendor's retry

        assert (outcome.accepted, again.duplicates) == (1, 1)
        contact = await h.engine.store.find_contact_by_phone("+5511999998888")
        assert contact is not None
        events = await h.engine.store.list_events(contact_id=contact.id, limit=10)
        assert [e.data["text"] for e in events if e.kind == "inbound.reply"] == ["oi"]


async def test_a_lone_surrogate_in_a_webhook_becomes_a_replacement_character(
    tmp_path: Path,
    database: Database,  # noqa: F811
) -> None:
    # "\ud800" alone is no character (UTF-8 cannot encode it): the store failed on it
    # and the vendor got a 500, retrying for ever. The rest of what it said is kept.
    reply = b'{"inbound": [{"from": "+5511999998888", "type": "reply", "text": "o\\ud800i"}]}'
    report = b'{"status": "failed", "external_id": "k-\\udc00", "error": "n\\udfffo"}'
    storage = database.dsn if database.backend == "postgres" else f"sqlite:///{database.dsn}"
    settings = settings_for(tmp_path, storage=storage)
    altu = {"type": "altu", "url": "http://127.0.0.1:9/zenvia/s/i", "token": "t0k3n-altu"}
    settings = settings.model_copy(
        update={"providers": {**settings.providers, "altu": AltuConfig.model_validate(altu)}}
    )
    async with harness(settings) as h:
        replied = await h.engine.ingest_webhook("sandbox", reply, {})
        reported = await h.engine.ingest_webhook("altu", report, {})
        again = await h.engine.ingest_webhook("altu", report, {})  # the vendor's retry

        assert (replied.accepted, reported.pending, again.duplicates) == (1, 1, 1)
        contact = await h.engine.store.find_contact_by_phone("+5511999998888")
        assert contact is not None
        events = await h.engine.store.list_events(contact_id=contact.id, limit=10)
        assert [e.data["text"] for e in events if e.kind == "inbound.reply"] == ["o\ufffdi"]
