"""The one place HTTP answers become typed errors, and the helpers around it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from engine.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from providers.base import error_for_status, mask_phone, parse_retry_after, vendor_message

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (429, ProviderRateLimited, True),
        (401, ProviderAuthError, False),
        (403, ProviderAuthError, False),
        (408, ProviderUnavailable, True),
        (500, ProviderUnavailable, True),
        (502, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (504, ProviderUnavailable, True),
        (400, ProviderRejected, False),
        (404, ProviderRejected, False),
        (409, ProviderRejected, False),
        (422, ProviderRejected, False),
    ],
)
def test_each_status_maps_to_the_error_the_engine_acts_on(
    status: int, kind: type[ProviderError], retryable: bool
) -> None:
    error = error_for_status(status, "número inválido", provider="gw")
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status == status
    assert error.vendor_message == "número inválido"
    assert "gw" in str(error)
    assert "número inválido" in str(error)


def test_rate_limit_and_unavailable_carry_the_retry_after_hint() -> None:
    limited = error_for_status(429, None, provider="gw", retry_after="7")
    down = error_for_status(503, None, provider="gw", retry_after="30")
    rejected = error_for_status(400, None, provider="gw", retry_after="30")
    assert limited.retry_after == 7.0
    assert down.retry_after == 30.0
    assert rejected.retry_after is None
    assert str(limited) == "gw is rate limiting (429)"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Wed, 01 May 2024 12:02:00 GMT", 120.0),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),  # a date in the past means "now"
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"error": {"code": 21, "message": "invalid number"}}', "invalid number"),
        (b'{"error": "invalid number"}', "invalid number"),
        (b'{"message": "invalid number"}', "invalid number"),
        (b'{"detail": "invalid number"}', "invalid number"),
        (b'{"errors": [{"message": "invalid number"}]}', "invalid number"),
        (b"invalid   number\n", "invalid number"),
        (b'{"code": 7}', '{"code": 7}'),
        (b"", None),
        (b"   ", None),
    ],
)
def test_vendor_message_finds_the_vendors_words_in_common_shapes(
    body: bytes, said: str | None
) -> None:
    assert vendor_message(body) == said


def test_vendor_message_is_cut_to_the_limit() -> None:
    said = vendor_message(b"x" * 1000, limit=50)
    assert said is not None
    assert len(said) == 50
    assert said.endswith("…")


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+5511999999999", "+55*******9999"),
        ("5511999999999", "+55*******9999"),
        ("+55 (11) 99999-1234", "+55*******1234"),
        ("1234", "****"),
        (None, "<no phone>"),
        ("", "<no phone>"),
    ],
)
def test_mask_phone_keeps_only_country_code_and_last_four(phone: str | None, masked: str) -> None:
    assert mask_phone(phone) == masked
