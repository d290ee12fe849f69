"""The listing contract (`ports.executions.ExecutionQueries`), run against every adapter through
`storage`: each filter alone and combined, newest first with ties broken by id, keyset pages
that neither repeat nor skip while executions are being added; and, on SQLite and PostgreSQL,
the plan of a page: an index walked in order, no sort of the table."""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3

import pytest

from adapters.storage.postgres.queries import page_query as pg_page_query
from adapters.storage.sqlite import SqliteStorage
from adapters.storage.sqlite.queries import page_query as sqlite_page_query
from core.listing import EVERYTHING, Cursor, ExecutionFilter, newest_first
from core.model import Execution, ExecutionState, WorkflowRef
from tests.contract.pg import postgres_storage

BOUND = 30  # seconds: no test here may hang longer

REFS = [
    WorkflowRef("billing", "invoice"),
    WorkflowRef("billing", "refund"),
    WorkflowRef("default", "hello"),
]
SERVICES = [None, "shop", "back-office"]
STATES = list(ExecutionState)


def execution(n: int, *, at: float | None = None, rng: random.Random | None = None) -> Execution:
    pick = rng or random.Random(n)
    return Execution(
        execution_id=f"e{n:05d}",
        ref=pick.choice(REFS),
        version=1 + n % 3,
        state=pick.choice(STATES),
        input={"n": n},
        created_at=1000.0 + n if at is None else at,
        updated_at=1000.0 + n if at is None else at,
        service=pick.choice(SERVICES),
    )


async def stored(storage, executions: list[Execution]) -> list[Execution]:
    for item in executions:
        await storage.executions.create(item)
    return executions


async def everything(
    storage, filter: ExecutionFilter, limit: int, pause: float | None = None
) -> list[Execution]:
    """Every page of a listing, bounded in count; `pause`: seconds to let others run between
    pages."""
    found: list[Execution] = []
    after: Cursor | None = None
    for _ in range(1000):
        if pause is not None:
            await asyncio.sleep(pause)
        page = await storage.queries.page(filter, limit, after)
        found += page
        if len(page) < limit:
            return found
        after = Cursor.after(page[-1])
    raise AssertionError("the listing did not end")


def ids(executions: list[Execution]) -> list[str]:
    return [e.execution_id for e in executions]


FILTERS = [
    EVERYTHING,
    ExecutionFilter(namespace="billing"),
    ExecutionFilter(namespace="nowhere"),
    ExecutionFilter(workflow=WorkflowRef("billing", "refund")),
    ExecutionFilter(workflow=WorkflowRef("default", "hello")),
    ExecutionFilter(service="shop"),
    ExecutionFilter(states=frozenset({ExecutionState.FAILED})),
    ExecutionFilter(states=frozenset({ExecutionState.PAUSED, ExecutionState.CANCELLED})),
    ExecutionFilter(namespace="billing", service="back-office"),
    ExecutionFilter(workflow=WorkflowRef("billing", "invoice"), states=frozenset(STATES[:3])),
    ExecutionFilter(
        namespace="default",
        workflow=WorkflowRef("billing", "invoice"),  # contradicts the namespace: nothing
    ),
    ExecutionFilter(
        namespace="billing",
        workflow=WorkflowRef("billing", "invoice"),
        service="shop",
        states=frozenset({ExecutionState.COMPLETED, ExecutionState.RUNNING}),
    ),
]


@pytest.mark.timeout(BOUND)
async def test_every_filter_keeps_what_it_names_newest_first(storage):
    rows = await stored(storage, [execution(n) for n in range(120)])
    for filter in FILTERS:
        expected = newest_first(e for e in rows if filter.keeps(e))
        assert ids(await storage.queries.page(filter, 500)) == ids(expected), filter
        assert ids(await everything(storage, filter, 7)) == ids(expected), filter


async def test_listed_executions_come_back_whole(storage):
    [item] = await stored(storage, [execution(1)])
    [listed] = await storage.queries.page(EVERYTHING, 10)
    assert listed == item


async def test_an_empty_store_lists_nothing(storage):
    assert await storage.queries.page(EVERYTHING, 50) == []
    assert await storage.queries.page(EVERYTHING, 50, Cursor(1e9, "zzz")) == []


async def test_a_page_holds_at_most_limit_and_starts_after_the_cursor(storage):
    rows = newest_first(await stored(storage, [execution(n) for n in range(30)]))
    first = await storage.queries.page(EVERYTHING, 10)
    assert ids(first) == ids(rows[:10])
    second = await storage.queries.page(EVERYTHING, 10, Cursor.after(first[-1]))
    assert ids(second) == ids(rows[10:20])
    # A cursor between two stored positions starts right after it.
    between = Cursor(rows[4].created_at - 0.5, "e")
    assert ids(await storage.queries.page(EVERYTHING, 3, between)) == ids(rows[5:8])


async def test_equal_creation_times_are_ordered_by_id(storage):
    rows = await stored(storage, [execution(n, at=5.0) for n in range(25)])
    rows += await stored(storage, [execution(n, at=4.0) for n in range(25, 30)])
    expected = sorted(ids(rows[:25]), reverse=True) + sorted(ids(rows[25:]), reverse=True)
    # Page boundaries fall inside the run of equal times: each id comes once, in id order.
    assert ids(await everything(storage, EVERYTHING, 4)) == expected


async def test_text_no_store_holds_matches_nothing(storage):
    await stored(storage, [execution(1)])
    assert await storage.queries.page(ExecutionFilter(service="a\x00b"), 10) == []
    assert await storage.queries.page(EVERYTHING, 10, Cursor(9e9, "\ud800")) == []


@pytest.mark.timeout(BOUND)
async def test_paging_while_executions_are_added_repeats_and_skips_nothing(storage):
    rng = random.Random(7)
    # A few hundred, many sharing a creation time, so pages split runs of ties.
    before = [execution(n, at=float(1000 + n // 4), rng=rng) for n in range(400)]
    await stored(storage, before)
    counter = itertools.count(10_000)
    stop = asyncio.Event()

    async def add_newer() -> int:
        added = 0
        while not stop.is_set() and added < 2000:
            n = next(counter)
            await storage.executions.create(execution(n, at=float(5000 + n // 3), rng=rng))
            added += 1
            await asyncio.sleep(0)
        return added

    adder = asyncio.create_task(add_newer())
    try:
        for filter in (EVERYTHING, ExecutionFilter(namespace="billing")):
            listed = await everything(storage, filter, 23, pause=0.002)
            old = [e for e in listed if e.created_at < 5000]
            expected = newest_first(e for e in before if filter.keeps(e))
            assert ids(old) == ids(expected)
            assert len(set(ids(listed))) == len(listed)
    finally:
        stop.set()
        added = await adder
    assert added > 0


# -- plans -------------------------------------------------------------------------------------

NEWEST_OF_A_WORKFLOW = ExecutionFilter(workflow=WorkflowRef("billing", "invoice"))
PLANNED = [
    (NEWEST_OF_A_WORKFLOW, None),
    (NEWEST_OF_A_WORKFLOW, Cursor(1500.0, "e00500")),
    (EVERYTHING, Cursor(1500.0, "e00500")),
    (ExecutionFilter(service="shop"), None),
    (ExecutionFilter(namespace="billing"), None),
    (ExecutionFilter(namespace="default", states=frozenset({ExecutionState.FAILED})), None),
    (ExecutionFilter(states=frozenset({ExecutionState.FAILED})), None),
]


def _bulk_rows(count: int, input_value: object) -> list[tuple]:
    rng = random.Random(3)
    found = []
    for n in range(count):
        ref = rng.choice(REFS)
        state, service = str(rng.choice(STATES)), rng.choice(SERVICES)
        at = 1000.0 + n
        found.append((f"e{n:07d}", ref.namespace, ref.name, 1, state, input_value, at, at, service))
    return found


async def test_sqlite_pages_walk_an_index_without_sorting(tmp_path):
    path = tmp_path / "flux.db"
    storage = await SqliteStorage.open(path)
    await storage.close()
    db = sqlite3.connect(path)
    try:
        db.executemany(
            "INSERT INTO executions (id, namespace, name, version, state, input, created_at, "
            "updated_at, service) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _bulk_rows(5000, "{}"),
        )
        db.commit()
        db.execute("ANALYZE")
        for filter, after in PLANNED:
            sql, params = sqlite_page_query(filter, 50, after)
            plan = " | ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "USING INDEX executions_" in plan or "USING COVERING INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort
    finally:
        db.close()


async def test_postgres_pages_walk_an_index_without_sorting():
    async with postgres_storage() as storage:
        async with storage._pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO executions (id, namespace, name, version, state, input, "
                "created_at, updated_at, service) VALUES ($1, $2, $3, $4, $5, $6::json, $7, "
                "$8, $9)",
                _bulk_rows(20000, {}),
            )
            await conn.execute("ANALYZE executions")
            for filter, after in PLANNED:
                sql, params = pg_page_query(filter, 50, after)
                found = await conn.fetch("EXPLAIN " + sql, *params)
                plan = " | ".join(row[0] for row in found)
                assert "Index Scan Backward using executions_" in plan, plan
                assert "Sort" not in plan, plan
