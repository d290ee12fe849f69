"""A worker process's view of the execution store: every write is conditional on the lease.

The worker hands this view to an ordinary Runtime. `save` and `append` go through
`save_owned` / `append_owned`, so once another worker has taken an execution over, this one
can write nothing more for it: no execution completes twice. `in_states` answers the batch the
worker has just claimed, which makes `Runtime.recover()` replay exactly those executions from
their logs (finished tasks are answered from the log, not rerun).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.model import Execution, ExecutionEvent, ExecutionState
from ports.executions import ExecutionLog, Leases


class LeaseLost(Exception):
    """This worker no longer holds the execution's lease; its run must stop writing."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"the lease on execution {execution_id} was lost")
        self.execution_id = execution_id


class LeasedExecutions:
    """ExecutionLog for a Runtime that drives executions leased to `owner`."""

    def __init__(self, store: ExecutionLog, leases: Leases, owner: str) -> None:
        self.store = store
        self.leases = leases
        self.owner = owner
        self._claimed: list[Execution] = []

    def hand_over(self, claimed: Sequence[Execution]) -> None:
        """The executions the next `in_states` answers (once)."""
        self._claimed = list(claimed)

    async def create(self, execution: Execution) -> None:
        await self.store.create(execution)

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        if not await self.leases.save_owned(self.owner, execution, events):
            raise LeaseLost(execution.execution_id)

    async def save_if(
        self,
        execution: Execution,
        events: Sequence[ExecutionEvent],
        expected: Sequence[ExecutionState],
    ) -> bool:
        """A leased execution is in progress by definition: the lease is the condition."""
        return await self.leases.save_owned(self.owner, execution, events)

    async def overdue(self, now: float, limit: int) -> list[Execution]:
        return await self.store.overdue(now, limit)

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        if events and not await self.leases.append_owned(self.owner, events):
            raise LeaseLost(events[0].execution_id)

    async def get(self, execution_id: str) -> Execution | None:
        return await self.store.get(execution_id)

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        return await self.store.events(execution_id)

    async def in_states(self, states: Sequence[ExecutionState]) -> list[Execution]:
        claimed, self._claimed = self._claimed, []
        return [execution for execution in claimed if execution.state in states]
