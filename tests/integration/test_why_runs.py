"""`disparo why` tells how each run moved: the timers that fired are among its lines."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from tests.integration.engine_kit import harness, settings_for
from tests.integration.test_cli import _local_config, disparo

BOLETO = {"valor": 1670, "vencimento": "2026-11-30"}


async def test_why_shows_the_timeout_that_sent_the_sms(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    settings = settings_for(
        tmp_path,
        storage=f"sqlite:///{tmp_path / 'd.db'}",
        provider_changes={"sandbox": {"read_after": None}},  # never read
    )
    async with harness(settings) as h:  # 10:00 in São Paulo
        run = await h.start("cobranca_boleto", context=BOLETO)
        await h.advance(timedelta(hours=2, seconds=5))
        assert (await h.run(run.id)).status == "completed"

    result = disparo("why", "c-1", "--config", str(config))

    assert result.returncode == 0, result.stderr
    # Without the timer line, the SMS step follows the send for no reason shown.
    timer = [line for line in result.stdout.splitlines() if " timer " in line]
    assert len(timer) == 1, result.stdout
    assert re.match(rf"2026-11-23 12:00:0\d  run {run.id[:8]}  lembrete +timer +timeout", timer[0])
