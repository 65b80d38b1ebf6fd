"""A vendor that echoes the contact's e-mail or CPF in its error: the message keeps
the vendor's words (erased with the contact), the log lines do not keep the
person's data (a log outlives an erasure and travels to stores operators do not
control)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.logs import RedactingFilter
from engine.models import MessageStatus
from tests.fakes.gateway import FakeGateway, Fault
from tests.integration.engine_kit import harness
from tests.integration.test_provider_faults import AUTH, make_settings, only_message

EMAIL = "titular.privado@provedor-pessoal.com.br"
CPF = "529.982.247-25"


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


async def test_the_vendor_words_reach_the_log_without_the_email_or_cpf(
    tmp_path: Path, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.fail_next(Fault.reject(f"destinatário {EMAIL} (CPF {CPF}) inválido", status=422))
    settings = make_settings(tmp_path, gateway)
    # As `disparo serve` writes its log: through the RedactingFilter of its handler.
    redacting = RedactingFilter(settings.secret_values())
    caplog.handler.addFilter(redacting)
    try:
        async with harness(settings) as h:
            caplog.set_level(logging.INFO)
            run = await h.start("aviso")
            message = await only_message(h, run.id)
    finally:
        caplog.handler.removeFilter(redacting)

    assert message.status == MessageStatus.FAILED
    assert EMAIL in (message.last_error or "")  # the operator's view of this message
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("destinatário t***@***.br (CPF ***.***.***-**) inválido" in w for w in warned)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert EMAIL not in logged
    assert CPF not in logged
    assert "provedor-pessoal" not in logged
