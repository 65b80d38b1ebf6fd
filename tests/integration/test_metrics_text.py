"""/metrics as a Prometheus server scrapes it: text format 0.0.4, every line parsed."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

AUTH = {"Authorization": "Bearer test-token-0123456789"}
RUN = {
    "flow": "cobranca_boleto",
    "contact": {"id": "c-1", "phone": "+55 11 99999-8888", "name": "Maria Souza"},
    "context": {"valor": 1670, "vencimento": "2026-11-30"},
}


async def test_metrics_parse_as_prometheus_text_with_its_content_type(api: Any) -> None:
    client, h = api
    assert (await client.post("/v1/runs", json=RUN, headers=AUTH)).status == 201
    await h.engine.settle()

    response = await client.get("/metrics")
    text = await response.text()

    assert response.status == 200
    # The format and its version, as Prometheus's content negotiation names them.
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(text)}
    runs = {
        (s.labels["flow"], s.labels["event"]): s.value for s in families["disparo_runs"].samples
    }
    assert runs[("cobranca_boleto", "started")] == 1
    sent = [s for s in families["disparo_messages"].samples if s.labels.get("status") == "sent"]
    assert [s.value for s in sent] == [1]
    assert "disparo_due_work_lag_seconds" in families
