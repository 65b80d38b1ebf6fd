"""Prometheus metrics of one engine (its own registry, so tests and processes don't mix)."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# `*_created` series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_M = TypeVar("_M", Counter, Gauge, Histogram)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.messages = Counter(
            "disparo_messages_total",
            "Messages by provider and the status they reached",
            ["provider", "status"],
            registry=self.registry,
        )
        self.expired = Counter(
            "disparo_messages_expired_total",
            "Messages failed unsent because their valid_for ran out, by provider "
            "(an outage, a backlog or a deferral outlasted it)",
            ["provider"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "disparo_rule_decisions_total",
            "Rule decisions by rule and outcome",
            ["rule", "outcome"],
            registry=self.registry,
        )
        self.due_lag = Histogram(
            "disparo_due_work_lag_seconds",
            "How late due work was claimed after it came due",
            ["kind"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "disparo_webhook_seconds",
            "Time to durably store a webhook, by provider",
            ["provider"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=self.registry,
        )
        self.webhooks = Counter(
            "disparo_webhooks_total",
            "Webhook requests by provider and result",
            ["provider", "result"],
            registry=self.registry,
        )
        self.runs = Counter(
            "disparo_runs_total",
            "Runs started and finished",
            ["flow", "event"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "disparo_due_work_in_flight", "Due work being handled now", registry=self.registry
        )
        self.provider_errors = Counter(
            "disparo_provider_errors_total",
            "Errors providers answered to sends (retried or not), by provider and code "
            "(PROVIDER_UNREACHABLE, PROVIDER_UNAVAILABLE, PROVIDER_AUTH, ...)",
            ["provider", "code"],
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "disparo_provider_circuit_open",
            "1 while a provider's circuit is open (its sends are paused)",
            ["provider"],
            registry=self.registry,
        )
        self.purged = Counter(
            "disparo_purged_total",
            "Rows the retention purge deleted, by kind (runs, messages, events, ...)",
            ["kind"],
            registry=self.registry,
        )
        self.clamped = Counter(
            "disparo_inbound_times_clamped_total",
            "Inbound events and status reports dated ahead of their arrival, by source "
            "(their time was replaced by the arrival: check the sender's clock or time zone)",
            ["source"],
            registry=self.registry,
        )
        self.erased = Counter(
            "disparo_contacts_erased_total",
            "Contacts erased on request (DELETE /v1/contacts/{id}, disparo erase)",
            registry=self.registry,
        )
        self.clock_skew = Gauge(
            "disparo_clock_skew_seconds",
            "This process's clock minus the shared database's (PostgreSQL; positive: "
            "ahead); past 1 s leases and rate windows of the processes disagree",
            registry=self.registry,
        )
        self.last_purge = Gauge(
            "disparo_retention_last_purge_timestamp_seconds",
            "When the retention purge last completed (Unix time; 0: not yet)",
            registry=self.registry,
        )

    def child(self, metric: _M, *values: str) -> _M:
        """``metric.labels(*values)``, looked up once per label set (the hot path)."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return cast(_M, found)

    def render(self) -> bytes:
        return generate_latest(self.registry)
