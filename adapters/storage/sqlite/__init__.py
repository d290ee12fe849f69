"""SQLite storage: the embedded default behind the storage ports.

Durability: WAL journal with `synchronous=NORMAL`. A commit is in the WAL when a call returns, so
it survives a crash or `kill -9` of the process; only an OS crash or power loss may drop the last
commits before a checkpoint (use `synchronous=FULL` if that matters more than write speed).

One module per concern: `catalog`, `services` (with the revisions), `executions` (the log),
`leases`, `api_keys`, and `storage`, which opens and closes the connections they share. `rows`
converts between core values and rows, `sql` holds what the stores share.
"""

from adapters.storage.sqlite.storage import SqliteStorage

__all__ = ["SqliteStorage"]
