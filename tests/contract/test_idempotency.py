"""The IdempotencyKeys contract (`ports.idempotency`), run against every adapter through
`storage`, plus what only some adapters have: replicas racing on one PostgreSQL schema, and a
SQLite file reopened."""

from __future__ import annotations

import asyncio

from adapters.storage.sqlite import SqliteStorage
from ports.idempotency import Claimed
from tests.contract.pg import replicas

WINDOW = 100.0
NOW = 1000.0


async def claim(
    storage, key="k1", fingerprint="f1", execution_id="e1", *, principal="p1", now=NOW
) -> Claimed:
    return await storage.idempotency.claim(
        principal, key, fingerprint, execution_id, now=now, window=WINDOW
    )


async def test_the_first_claim_wins_and_later_ones_get_its_mapping(storage):
    assert await claim(storage) == Claimed("f1", "e1", NOW, won=True)
    later = await claim(storage, fingerprint="f2", execution_id="e2", now=NOW + 5)
    assert later == Claimed("f1", "e1", NOW, won=False)


async def test_keys_are_per_principal_and_per_key(storage):
    assert (await claim(storage, principal="alice")).won
    assert (await claim(storage, principal="bob", execution_id="e2")).won
    assert (await claim(storage, principal="alice", key="k2", execution_id="e3")).won
    held = await claim(storage, principal="bob", execution_id="e9")
    assert (held.execution_id, held.won) == ("e2", False)


async def test_a_mapping_holds_for_the_window_and_an_expired_one_is_replaced(storage):
    await claim(storage)
    at_the_edge = await claim(storage, execution_id="e2", now=NOW + WINDOW)
    assert (at_the_edge.execution_id, at_the_edge.won) == ("e1", False)
    after = await claim(storage, fingerprint="f2", execution_id="e3", now=NOW + WINDOW + 1)
    assert after == Claimed("f2", "e3", NOW + WINDOW + 1, won=True)
    again = await claim(storage, execution_id="e4", now=NOW + WINDOW + 2)
    assert (again.fingerprint, again.execution_id, again.won) == ("f2", "e3", False)


async def test_release_forgets_only_the_mapping_of_that_execution(storage):
    await claim(storage)
    await storage.idempotency.release("p1", "k1", "someone-else")
    assert not (await claim(storage, execution_id="e2")).won
    await storage.idempotency.release("p1", "k1", "e1")
    assert (await claim(storage, fingerprint="f3", execution_id="e3")).won
    await storage.idempotency.release("p1", "never-claimed", "e1")  # nothing to forget


async def test_purge_deletes_mappings_made_before_the_bound_and_counts_them(storage):
    for n in range(3):
        await claim(storage, key=f"old{n}", execution_id=f"o{n}", now=NOW - 50 + n)
    await claim(storage, key="new", execution_id="n1", now=NOW)
    assert await storage.idempotency.purge(NOW) == 3
    assert await storage.idempotency.purge(NOW) == 0
    assert (await claim(storage, key="old0", execution_id="o9", now=NOW)).won
    assert not (await claim(storage, key="new", execution_id="n9", now=NOW)).won


async def test_concurrent_claims_on_one_key_have_exactly_one_winner(storage):
    claims = await asyncio.gather(
        *(claim(storage, execution_id=f"e{n}", now=NOW + n / 100) for n in range(16))
    )
    winners = [c for c in claims if c.won]
    assert len(winners) == 1
    assert {c.execution_id for c in claims} == {winners[0].execution_id}


async def test_claims_naming_one_execution_still_have_one_winner(storage):
    # A resume's claim names the execution it resumes: every retry names the same one.
    claims = await asyncio.gather(*(claim(storage, execution_id="same") for _ in range(8)))
    assert sum(c.won for c in claims) == 1


async def test_keys_hold_any_visible_ascii_and_long_principals(storage):
    key = "".join(chr(c) for c in range(0x21, 0x7F)) + "x" * 160  # 254 characters
    principal = "jwt:" + "s" * 500
    assert (await claim(storage, key=key, principal=principal)).won
    assert not (await claim(storage, key=key, principal=principal, execution_id="e2")).won
    assert (await claim(storage, key=key.lower(), principal=principal, execution_id="e3")).won


async def test_postgres_replicas_racing_on_one_key_make_one_winner():
    async with replicas(2) as (first, second):
        for round_ in range(5):
            key = f"race{round_}"
            claims = await asyncio.gather(
                *(
                    claim(store, key=key, execution_id=f"{round_}-{n}")
                    for n, store in enumerate([first, second] * 8)
                )
            )
            assert sum(c.won for c in claims) == 1
            assert len({c.execution_id for c in claims}) == 1


async def test_a_sqlite_mapping_survives_reopening_the_file(tmp_path):
    path = tmp_path / "flux.db"
    storage = await SqliteStorage.open(path)
    try:
        assert (await claim(storage)).won
    finally:
        await storage.close()
    reopened = await SqliteStorage.open(path)
    try:
        assert await claim(reopened, execution_id="e2") == Claimed("f1", "e1", NOW, won=False)
    finally:
        await reopened.close()
