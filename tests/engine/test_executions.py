"""The listing use cases (engine/executions.py) over the in-memory storage: what a principal
sees, page after page, when it may run only some workflows, and how far one page reads."""

from __future__ import annotations

import pytest

from adapters.storage.memory import MemoryStorage
from core.errors import ExecutionNotFound
from core.listing import Cursor, ExecutionFilter, Listing
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from core.permissions import EVERYONE, Principal, grants, run_permission
from engine.executions import MAX_ROUNDS, RESTRICTED_BATCH, ExecutionBrowser

REFS = [WorkflowRef("shop", "order"), WorkflowRef("ops", "hello"), WorkflowRef("shop", "hello")]


class CountingQueries:
    """The storage's queries, counting the rows each listing reads."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage, self.reads, self.rows = storage, 0, 0

    async def page(self, filter: ExecutionFilter, limit: int, after: Cursor | None = None):
        found = await self.storage.queries.page(filter, limit, after)
        self.reads += 1
        self.rows += len(found)
        return found


async def stored(count: int, ref_of=lambda n: REFS[n % 3]) -> MemoryStorage:
    storage = MemoryStorage()
    for n in range(count):
        await storage.executions.create(
            Execution(f"e{n:05d}", ref_of(n), 1, ExecutionState.COMPLETED, created_at=float(n))
        )
    return storage


async def every_page(browser: ExecutionBrowser, principal: Principal, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        page = await browser.list(principal, Listing(limit=limit, cursor=cursor))
        assert len(page.executions) <= limit
        seen += [e.execution_id for e in page.executions]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
    raise AssertionError("the listing did not end")


@pytest.mark.parametrize(
    "granted",
    [
        {"workflow:*:hello:run"},  # any namespace: no narrowing, rows checked one by one
        {"workflow:shop:*"},  # one namespace: pushed down to storage
        {"workflow:shop:hello:run", "workflow:ops:hello:run"},  # two namespaces
    ],
)
async def test_a_principal_pages_through_exactly_what_it_may_run(granted):
    storage = await stored(300)
    browser = ExecutionBrowser(storage.queries, storage.executions)
    principal = Principal("p", frozenset(granted))
    expected = [
        e.execution_id
        for e in sorted(storage.executions._executions.values(), key=lambda e: -e.created_at)
        if grants(principal, run_permission(e.ref))
    ]
    assert await every_page(browser, principal, 7) == expected
    assert await every_page(browser, EVERYONE, 50) == [f"e{n:05d}" for n in reversed(range(300))]


async def test_a_page_reads_a_bounded_number_of_rows_and_says_where_to_go_on():
    # One visible execution, the oldest, under thousands the principal may not see.
    principal = Principal("p", frozenset({"workflow:*:hello:run"}))
    storage = await stored(3000, ref_of=lambda n: REFS[2] if n == 0 else REFS[0])
    queries = CountingQueries(storage)
    browser = ExecutionBrowser(queries, storage.executions)
    page = await browser.list(principal, Listing(limit=10))
    assert page.executions == () and page.next_cursor is not None
    assert queries.reads == MAX_ROUNDS and queries.rows <= MAX_ROUNDS * RESTRICTED_BATCH
    found = await every_page(browser, principal, 10)
    assert found == ["e00000"]


async def test_show_is_404_for_an_execution_the_principal_may_not_run():
    storage = await stored(3)
    await storage.executions.append(
        [ExecutionEvent("e00000", 1, EventKind.STATE, "", "RUNNING", 5.0)]
    )
    browser = ExecutionBrowser(storage.queries, storage.executions)
    execution, events = await browser.show(EVERYONE, "e00000")
    assert execution.ref == REFS[0] and [e.seq for e in events] == [1]
    with pytest.raises(ExecutionNotFound):
        await browser.show(Principal("p", frozenset({"workflow:ops:*"})), "e00000")
    with pytest.raises(ExecutionNotFound):
        await browser.show(EVERYONE, "nope")
