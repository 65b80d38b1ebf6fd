"""Store contract: the state providers share (rate budgets, renewable credentials),
on every backend, including two stores on one database as two processes would have."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from storage.base import Store
from tests.contract.store_kit import at

MINUTE = timedelta(seconds=60)
BUDGET = "interflow https://api.interflow.chat key:0123456789abcdef"
TOKEN = "eyJhbGciOiJIUzI1NiIsInR5.first-secret-token"
NEWER = "eyJhbGciOiJIUzI1NiIsInR5.second-secret-token"
LOGIN = "robbu https://api.robbu.global acme/api-user"
LEASE = timedelta(seconds=30)

AnotherStore = Callable[[], Awaitable[Store]]


# ---------------------------------------------------------------- rate budgets


async def test_a_budget_gives_limit_slots_per_window_then_says_when_the_next_frees(
    store: Store,
) -> None:
    taken = [
        await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(s)) for s in (0, 10, 20)
    ]
    assert [slot.taken for slot in taken] == [True, True, True]
    refused = await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(30))
    assert (refused.taken, refused.free_at, refused.limit) == (False, at(60), 3)
    assert (await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(59.9))).taken is False
    assert (await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(60))).taken is True
    # The window slides: the slot of the start at 10 s frees at 70 s, not at 120 s.
    assert (await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(61))).free_at == at(
        70
    )


async def test_budgets_are_independent_by_name(store: Store) -> None:
    await store.take_rate_slot(BUDGET, limit=1, window=MINUTE, now=at(0))
    other = await store.take_rate_slot("another account", limit=1, window=MINUTE, now=at(0))
    assert other.taken is True
    assert (await store.take_rate_slot(BUDGET, limit=1, window=MINUTE, now=at(1))).taken is False


async def test_two_processes_take_from_one_budget_and_never_more_than_the_limit(
    store: Store, another_store: AnotherStore
) -> None:
    second = await another_store()
    attempts = [
        each.take_rate_slot(BUDGET, limit=5, window=MINUTE, now=at(0))
        for _ in range(10)
        for each in (store, second)
    ]
    slots = await asyncio.gather(*attempts)
    assert sum(slot.taken for slot in slots) == 5
    assert {slot.free_at for slot in slots if not slot.taken} == {at(60)}


async def test_a_budget_survives_a_restart(store: Store, another_store: AnotherStore) -> None:
    await store.take_rate_slot(BUDGET, limit=1, window=MINUTE, now=at(0))
    await store.close()
    reopened = await another_store()
    refused = await reopened.take_rate_slot(BUDGET, limit=1, window=MINUTE, now=at(5))
    assert (refused.taken, refused.free_at) == (False, at(60))


async def test_a_clock_stepped_back_holds_the_budget_one_window_not_the_size_of_the_step(
    store: Store,
) -> None:
    # NTP steps the host's clock back an hour (a VM resumed, a wrong time corrected)
    # right after the budget was used up: those starts happened just now, so they
    # hold the budget for one window from now, not for the hour the clock went back.
    for second in (0, 1, 2):
        await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(3600 + second))
    refused = await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(0))
    assert (refused.taken, refused.free_at) == (False, at(60))
    assert (await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(60))).taken
    # The start taken after the step counts from its own time, like any other.
    assert (await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(61))).taken
    assert (await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(62))).taken
    assert (await store.take_rate_slot(BUDGET, limit=3, window=MINUTE, now=at(63))).free_at == at(
        120
    )


async def test_a_pause_holds_for_everybody_and_a_shorter_one_does_not_cut_it(
    store: Store, another_store: AnotherStore
) -> None:
    await store.restrict_rate_budget(BUDGET, now=at(0), paused_until=at(30))
    await store.restrict_rate_budget(BUDGET, now=at(1), paused_until=at(10))
    second = await another_store()
    held = await second.take_rate_slot(BUDGET, limit=100, window=MINUTE, now=at(20))
    assert (held.taken, held.free_at) == (False, at(30))
    assert (await second.take_rate_slot(BUDGET, limit=100, window=MINUTE, now=at(30))).taken


async def test_the_vendors_limit_lowers_the_budget_and_its_later_word_lifts_it(
    store: Store,
) -> None:
    await store.restrict_rate_budget(BUDGET, now=at(0), vendor_limit=2)
    first = await store.take_rate_slot(BUDGET, limit=1000, window=MINUTE, now=at(0))
    assert (first.taken, first.limit) == (True, 2)
    await store.take_rate_slot(BUDGET, limit=1000, window=MINUTE, now=at(1))
    assert (await store.take_rate_slot(BUDGET, limit=1000, window=MINUTE, now=at(2))).taken is False
    await store.restrict_rate_budget(BUDGET, now=at(3), vendor_limit=5000)  # plan upgraded
    lifted = await store.take_rate_slot(BUDGET, limit=1000, window=MINUTE, now=at(3))
    assert (lifted.taken, lifted.limit) == (True, 1000)  # never above the configured limit


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        ({"budget": "", "limit": 5, "window": MINUTE}, "non-empty name"),
        ({"budget": BUDGET, "limit": 0, "window": MINUTE}, "whole number >= 1"),
        ({"budget": BUDGET, "limit": 5, "window": timedelta(0)}, "longer than zero"),
        ({"budget": "x" * 201, "limit": 5, "window": MINUTE}, "at most 200 characters"),
    ],
)
async def test_a_bad_budget_is_refused_clearly(
    store: Store, call: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await store.take_rate_slot(now=at(0), **call)  # type: ignore[arg-type]


async def test_a_bad_vendor_limit_is_refused_clearly(store: Store) -> None:
    with pytest.raises(ValueError, match="vendor's limit must be a whole number >= 1"):
        await store.restrict_rate_budget(BUDGET, now=at(0), vendor_limit=0)


# ---------------------------------------------------------------- credentials


async def test_the_first_claimant_logs_in_and_the_other_waits_then_takes_its_token(
    store: Store, another_store: AnotherStore
) -> None:
    second = await another_store()
    assert await store.get_provider_credential(LOGIN) is None
    mine = await store.claim_credential_renewal(
        LOGIN, stale_version=0, owner="a", now=at(0), lease=LEASE
    )
    theirs = await second.claim_credential_renewal(
        LOGIN, stale_version=0, owner="b", now=at(1), lease=LEASE
    )
    assert (mine.claimed, mine.stored_version) == (True, 0)
    assert (theirs.claimed, theirs.current, theirs.busy_until) == (False, None, at(30))
    stored = await store.store_renewed_credential(
        LOGIN, value=TOKEN, replaces_version=0, owner="a", now=at(2)
    )
    assert stored is not None
    assert (stored.value, stored.version) == (TOKEN, 1)
    again = await second.claim_credential_renewal(
        LOGIN, stale_version=0, owner="b", now=at(3), lease=LEASE
    )
    assert again.current == stored
    assert await second.get_provider_credential(LOGIN) == stored


async def test_a_renewal_after_a_refusal_replaces_the_version_once(
    store: Store, another_store: AnotherStore
) -> None:
    second = await another_store()
    await store.claim_credential_renewal(LOGIN, stale_version=0, owner="a", now=at(0), lease=LEASE)
    await store.store_renewed_credential(
        LOGIN, value=TOKEN, replaces_version=0, owner="a", now=at(0)
    )
    # Both saw version 1 refused; b asks first.
    claim = await second.claim_credential_renewal(
        LOGIN, stale_version=1, owner="b", now=at(10), lease=LEASE
    )
    assert (claim.claimed, claim.stored_version) == (True, 1)
    busy = await store.claim_credential_renewal(
        LOGIN, stale_version=1, owner="a", now=at(11), lease=LEASE
    )
    assert busy.busy_until == at(40)
    renewed = await second.store_renewed_credential(
        LOGIN, value=NEWER, replaces_version=1, owner="b", now=at(12)
    )
    assert renewed is not None
    assert renewed.version == 2
    # A late compare-and-set over version 1 writes nothing.
    late = await store.store_renewed_credential(
        LOGIN, value="eyJ.a-third-token", replaces_version=1, owner="a", now=at(13)
    )
    assert late is None
    assert (await store.get_provider_credential(LOGIN)) == renewed


async def test_a_failed_renewal_is_released_and_a_dead_claimants_lease_lapses(
    store: Store, another_store: AnotherStore
) -> None:
    second = await another_store()
    await store.claim_credential_renewal(LOGIN, stale_version=0, owner="a", now=at(0), lease=LEASE)
    await store.release_credential_renewal(LOGIN, owner="b")  # not b's claim: nothing changes
    held = await second.claim_credential_renewal(
        LOGIN, stale_version=0, owner="b", now=at(1), lease=LEASE
    )
    assert held.busy_until == at(30)
    await store.release_credential_renewal(LOGIN, owner="a")
    taken = await second.claim_credential_renewal(
        LOGIN, stale_version=0, owner="b", now=at(2), lease=LEASE
    )
    assert taken.claimed is True
    # b dies holding the claim: after its lease, a may claim.
    assert (
        await store.claim_credential_renewal(
            LOGIN, stale_version=0, owner="a", now=at(31), lease=LEASE
        )
    ).busy_until == at(32)
    lapsed = await store.claim_credential_renewal(
        LOGIN, stale_version=0, owner="a", now=at(32), lease=LEASE
    )
    assert lapsed.claimed is True


async def test_a_claim_left_by_a_dead_claimant_before_the_clock_stepped_back_lapses(
    store: Store, another_store: AnotherStore
) -> None:
    # a claims the login, dies, and the host's clock is stepped back an hour (a VM
    # resumed, NTP fixing a wrong time): b would otherwise wait an hour for a claim
    # that can last one lease at most, with every Robbu send waiting for the token.
    second = await another_store()
    await store.claim_credential_renewal(
        LOGIN, stale_version=0, owner="a", now=at(3600), lease=LEASE
    )
    taken = await second.claim_credential_renewal(
        LOGIN, stale_version=0, owner="b", now=at(0), lease=LEASE
    )
    assert taken.claimed is True
    # Within one lease, as ever, the claim holds.
    held = await store.claim_credential_renewal(
        LOGIN, stale_version=0, owner="a", now=at(1), lease=LEASE
    )
    assert held.busy_until == at(30)


async def test_concurrent_claims_from_two_processes_give_one_claim(
    store: Store, another_store: AnotherStore
) -> None:
    second = await another_store()
    answers = await asyncio.gather(
        *(
            each.claim_credential_renewal(
                LOGIN, stale_version=0, owner=f"{tag}-{i}", now=at(0), lease=LEASE
            )
            for i in range(8)
            for tag, each in (("a", store), ("b", second))
        )
    )
    assert sum(answer.claimed for answer in answers) == 1
    assert all(answer.busy_until == at(30) for answer in answers if not answer.claimed)


async def test_the_token_survives_a_restart_and_stays_out_of_reprs(
    store: Store, another_store: AnotherStore
) -> None:
    await store.claim_credential_renewal(LOGIN, stale_version=0, owner="a", now=at(0), lease=LEASE)
    stored = await store.store_renewed_credential(
        LOGIN, value=TOKEN, replaces_version=0, owner="a", now=at(0)
    )
    await store.close()
    reopened = await another_store()
    kept = await reopened.get_provider_credential(LOGIN)
    assert kept == stored
    renewal = await reopened.claim_credential_renewal(
        LOGIN, stale_version=0, owner="b", now=at(1), lease=LEASE
    )
    assert TOKEN not in repr(kept) + repr(renewal) + str(kept)


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        ({"name": "", "stale_version": 0, "owner": "a", "lease": LEASE}, "non-empty name"),
        ({"name": LOGIN, "stale_version": -1, "owner": "a", "lease": LEASE}, "last read"),
        ({"name": LOGIN, "stale_version": 0, "owner": "", "lease": LEASE}, "its owner"),
        ({"name": LOGIN, "stale_version": 0, "owner": "a", "lease": timedelta(0)}, "lease"),
    ],
)
async def test_a_bad_renewal_claim_is_refused_clearly(
    store: Store, call: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await store.claim_credential_renewal(now=at(0), **call)  # type: ignore[arg-type]


async def test_an_empty_token_is_refused_without_naming_any_value(store: Store) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        await store.store_renewed_credential(
            LOGIN, value="", replaces_version=0, owner="a", now=at(0)
        )
