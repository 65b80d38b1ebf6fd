"""What `disparo serve` says at start about doors anyone who can reach its port could
open: a provider's webhook without `webhook_secret`, the example API token on a
non-loopback address."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.serve import EXAMPLE_API_TOKEN, warn_open_doors
from providers.robbu import RobbuConfig
from tests.integration.engine_kit import harness, settings_for


async def test_a_webhook_without_a_secret_and_the_example_token_are_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(
        tmp_path,
        api_token=EXAMPLE_API_TOKEN,
        provider_changes={"sandbox_sms": {"webhook_secret": "s3nha-do-webhook"}},
    )
    async with harness(settings) as h:
        with caplog.at_level(logging.WARNING, logger="disparo.serve"):
            warn_open_doors(h.engine, "127.0.0.1")
            on_loopback = list(caplog.messages)
            caplog.clear()
            warn_open_doors(h.engine, "0.0.0.0")
            everywhere = list(caplog.messages)

    assert on_loopback == [
        "POST /webhooks/sandbox takes events from anyone who can reach this port: set "
        "providers.sandbox.webhook_secret and give the vendor the URL with ?token=<it>"
    ]
    assert everywhere[:1] == on_loopback
    assert "the API token is config/disparo.yaml's example" in everywhere[1]
    assert len(everywhere) == 2


async def test_a_provider_that_takes_no_webhooks_is_not_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Robbu refuses every webhook body: asking for its webhook_secret misleads.
    robbu = {
        "type": "robbu",
        "base_url": "http://127.0.0.1:9",
        "company": "acme",
        "username": "user",
        "password": "p4ssw0rd-robbu",
        "private_token": "pr1vate-robbu",
        "channel": "whatsapp",
        "source": {"country_code": 55, "phone_number": "11999999999"},
    }
    settings = settings_for(tmp_path)
    settings = settings.model_copy(
        update={"providers": {**settings.providers, "robbu": RobbuConfig.model_validate(robbu)}}
    )
    async with harness(settings) as h:
        with caplog.at_level(logging.WARNING, logger="disparo.serve"):
            warn_open_doors(h.engine, "127.0.0.1")

    assert [m.split()[1] for m in caplog.messages] == ["/webhooks/sandbox", "/webhooks/sandbox_sms"]
