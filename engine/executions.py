"""Use cases of finding executions (SPEC §9): list them, newest first, a page at a time, and show
one with its input and log.

With auth on, a principal sees only the executions of workflows it may run: the others are
left out of a page, and showing one is "not found", as if it did not exist (its existence is
not leaked). Pages are filled from storage in a bounded number of reads, so a principal that
may see few of many executions gets short pages rather than an unbounded scan.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import evolve

from core.errors import ExecutionNotFound
from core.listing import MAX_LIMIT, Cursor, ExecutionFilter, Listing, Page, runnable_namespaces
from core.model import Execution, ExecutionEvent
from core.permissions import Principal, grants, run_permission
from ports.executions import ExecutionLog, ExecutionQueries

# Reads one listing may make when the principal may see only some executions; after them a
# short page is answered with a cursor past everything read, and the next page goes on there.
MAX_ROUNDS = 5
# Rows asked per read in that case: more than a page, so few reads fill one.
RESTRICTED_BATCH = 200
# A run permission with wildcard segments: a pattern that covers it covers every workflow.
_EVERY_RUN = "workflow:*:*:run"


class ExecutionBrowser:
    def __init__(self, queries: ExecutionQueries, log: ExecutionLog) -> None:
        self._queries = queries
        self._log = log

    async def list(self, principal: Principal, listing: Listing) -> Page:
        sees_all = grants(principal, _EVERY_RUN)
        filter = listing.filter if sees_all else narrowed(principal, listing.filter)
        if filter is None:
            return Page((), None)  # it may run nothing that the filter could keep
        limit = listing.limit
        batch = limit + 1 if sees_all else min(max(limit + 1, RESTRICTED_BATCH), MAX_LIMIT + 1)
        visible: list[Execution] = []
        after = listing.cursor
        for _ in range(MAX_ROUNDS):
            rows = await self._queries.page(filter, batch, after)
            for row in rows:
                if sees_all or visible_to(principal, row):
                    visible.append(row)
                    if len(visible) > limit:  # one more than a page: there is a next page
                        return Page(tuple(visible[:limit]), Cursor.after(visible[limit - 1]))
            if len(rows) < batch:
                return Page(tuple(visible), None)  # the store has no more
            after = Cursor.after(rows[-1])
        return Page(tuple(visible), after)

    async def show(
        self, principal: Principal, execution_id: str
    ) -> tuple[Execution, Sequence[ExecutionEvent]]:
        execution = await self._log.get(execution_id)
        if execution is None or not visible_to(principal, execution):
            raise ExecutionNotFound(
                f"execution '{execution_id}' not found", execution_id=execution_id
            )
        return execution, await self._log.events(execution_id)


def visible_to(principal: Principal, execution: Execution) -> bool:
    return grants(principal, run_permission(execution.ref))


def narrowed(principal: Principal, filter: ExecutionFilter) -> ExecutionFilter | None:
    """`filter`, narrowed to the one namespace the principal may run workflows of when its
    permissions name only one (so storage reads only those rows); None when the principal may
    run nothing the filter could keep. Rows are still checked one by one after this."""
    namespaces = runnable_namespaces(principal.permissions)
    if namespaces is None:
        return filter  # some permission runs workflows of any namespace
    wanted = filter.workflow.namespace if filter.workflow is not None else filter.namespace
    if wanted is not None:
        return filter if wanted in namespaces else None
    if len(namespaces) == 1:
        return evolve(filter, namespace=next(iter(namespaces)))
    return filter if namespaces else None
