"""The provider circuit breaker: when sends pause, and which one probes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.circuit import PROBE_RECHECK, CircuitBreaker

T0 = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
COOLDOWN = timedelta(seconds=30)


def opened() -> CircuitBreaker:
    breaker = CircuitBreaker(
        "gw", threshold=3, cooldown=COOLDOWN, cooldown_cap=timedelta(minutes=2)
    )
    assert [breaker.failure(T0) for _ in range(3)] == [False, False, True]
    return breaker


def test_failures_below_the_threshold_pause_nothing() -> None:
    breaker = CircuitBreaker("gw", threshold=3)
    breaker.failure(T0)
    breaker.failure(T0)
    assert breaker.admit(T0) is None
    breaker.success()
    breaker.failure(T0)
    breaker.failure(T0)
    assert breaker.admit(T0) is None, "a success in between starts the count again"


def test_an_open_circuit_pauses_every_send_until_the_cooldown_ends() -> None:
    breaker = opened()
    assert breaker.admit(T0) == T0 + COOLDOWN
    assert breaker.admit(T0 + COOLDOWN - timedelta(seconds=1)) == T0 + COOLDOWN


def test_half_open_lets_one_probe_through_and_the_rest_look_again_soon() -> None:
    breaker = opened()
    half_open = T0 + COOLDOWN
    assert breaker.admit(half_open) is None  # the probe
    assert breaker.admit(half_open) == half_open + PROBE_RECHECK
    later = half_open + timedelta(seconds=2)
    assert breaker.admit(later) == later + PROBE_RECHECK


def test_the_probes_success_closes_the_circuit() -> None:
    breaker = opened()
    assert breaker.admit(T0 + COOLDOWN) is None
    breaker.success()
    assert not breaker.is_open
    assert breaker.admit(T0 + COOLDOWN) is None
    assert breaker.admit(T0 + COOLDOWN) is None


def test_the_probes_failure_reopens_for_twice_as_long_up_to_the_cap() -> None:
    breaker = opened()
    at = T0 + COOLDOWN
    waits = []
    for _ in range(4):
        assert breaker.admit(at) is None
        assert breaker.failure(at)
        until = breaker.admit(at)
        assert until is not None
        waits.append(until - at)
        at = until
    assert waits == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=2),
        timedelta(minutes=2),
    ]


def test_a_probe_without_a_verdict_lets_the_next_send_probe() -> None:
    breaker = opened()
    half_open = T0 + COOLDOWN
    assert breaker.admit(half_open) is None
    breaker.settle(half_open)  # say, a 422 for that one message
    assert breaker.admit(half_open) is None
    assert breaker.admit(half_open) is not None


def test_a_probe_that_never_reports_is_taken_as_lost_after_a_cooldown() -> None:
    breaker = opened()
    half_open = T0 + COOLDOWN
    assert breaker.admit(half_open) is None
    near_the_end = half_open + COOLDOWN - timedelta(seconds=1)
    assert breaker.admit(near_the_end) == half_open + COOLDOWN
    assert breaker.admit(half_open + COOLDOWN) is None  # a new probe


def test_only_the_probe_settling_lets_the_next_send_probe() -> None:
    breaker = opened()
    half_open = T0 + COOLDOWN
    assert breaker.admit(half_open) is None
    breaker.settle(T0)  # a send admitted before the circuit opened ends late
    assert breaker.admit(half_open) is not None


def test_a_clock_stepped_back_pauses_sends_one_cooldown_not_the_size_of_the_step() -> None:
    # Opened, then NTP steps the host's clock back an hour (a VM resumed, a wrong
    # time corrected): the provider is tried again one cooldown later, not an hour.
    breaker = opened()
    stepped_back = T0 - timedelta(hours=1)
    assert breaker.admit(stepped_back) == stepped_back + COOLDOWN
    assert breaker.admit(stepped_back + COOLDOWN) is None  # the probe


def test_a_probe_out_when_the_clock_stepped_back_is_taken_as_lost_one_cooldown_later() -> None:
    breaker = opened()
    assert breaker.admit(T0 + COOLDOWN) is None  # the probe, then the clock goes back
    stepped_back = T0 - timedelta(hours=1)
    assert breaker.admit(stepped_back) == stepped_back + COOLDOWN
    assert breaker.admit(stepped_back + COOLDOWN) is None  # a new probe
