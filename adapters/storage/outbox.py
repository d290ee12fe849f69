"""What every storage adapter's callback outbox shares: the delivery a save owes, made once so
the three adapters store the same thing.

Each adapter looks, inside the transaction of a save, at the execution as it was before the
write (`Prior`), and after a successful write stores `owed(...)`'s delivery in that same
transaction: the state and the delivery telling it commit together or not at all.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from attrs import evolve, frozen

from core import callbacks
from core.callbacks import Delivery
from core.model import Execution, ExecutionState


@frozen
class Prior:
    """What a save needs of the stored row: its state (None: not stored yet), where it is told
    and which service started it."""

    state: ExecutionState | None
    callback_url: str | None
    service: str | None


def not_stored(execution: Execution) -> Prior:
    """The `Prior` of an execution whose first save stores the whole row."""
    return Prior(None, execution.callback_url, execution.service)


def owed(execution: Execution, prior: Prior) -> Delivery | None:
    """The delivery that saving `execution` over `prior` owes, or None."""
    url = prior.callback_url
    if url is None or not callbacks.notifies(execution.state, prior.state):
        return None
    now = execution.updated_at or time.time()
    told = evolve(execution, service=prior.service)  # the stored service, whatever was passed
    return Delivery(
        delivery_id=f"msg_{uuid.uuid4().hex}",
        execution_id=execution.execution_id,
        url=url,
        payload=callbacks.payload_text(told),
        created_at=now,
        next_at=now,
    )


def looks_at(execution: Execution) -> bool:
    """Does a save of `execution` need its prior row read at all? Only a save into a state
    that is told, of an execution that has a callback URL: every other save (most of them)
    costs nothing more. Every executor saves the execution it was handed whole, URL
    included (it crosses the worker link too), so the URL passed is the one stored."""
    return execution.callback_url is not None and execution.state in callbacks.NOTIFIED


# A delivery as both SQL adapters read it: id, execution_id, url, payload (text), created_at,
# next_at, attempts, delivered_at, gave_up_at, last_error.
def delivery_from_row(row: Sequence[Any]) -> Delivery:
    id_, execution_id, url, payload, created, next_at, attempts, delivered, gave_up, error = row
    return Delivery(
        delivery_id=id_,
        execution_id=execution_id,
        url=url,
        payload=payload,
        created_at=created,
        next_at=next_at,
        attempts=attempts,
        delivered_at=delivered,
        gave_up_at=gave_up,
        last_error=error,
    )
