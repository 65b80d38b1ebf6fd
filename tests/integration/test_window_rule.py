"""The 24 h window rule as a designer meets it: `window: skip` holds back free
content outside the window, never a step that only sends an approved template."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.models import MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows

FLOW = """\
flow: janela
defaults:
  provider: sandbox
  rules: {window: skip}
start: lembrete
steps:
  lembrete:
    send:
      template:
        name: boleto_vencendo
        params:
          PrimeiroNome: "{{ contact.first_name }}"
          Valor: "{{ context.valor | brl }}"
          Vencimento: "{{ context.vencimento | date('%d/%m') }}"
    next: texto
  texto:
    send:
      text: "Qualquer dúvida, responda esta mensagem."
    next: fim
  fim:
    end: completed
"""


async def test_window_skip_sends_a_template_only_step_and_skips_free_text(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        # The contact never wrote: the window is closed.
        run = await h.start("janela", context={"valor": 89.9, "vencimento": "2026-11-30"})
        await h.advance(timedelta(seconds=6))

        template, text = await h.messages(run.id)
        assert template.payload["type"] == "template"
        assert template.status == MessageStatus.READ
        assert text.status == MessageStatus.SKIPPED
        window = [d for d in await h.decisions(run.id) if d["rule"] == "window"]
        assert [(d["step"], d["outcome"]) for d in window] == [
            ("lembrete", "template"),
            ("texto", "skip"),
        ]
