"""A bounded memo of values that hold at one revision of the stores they were read from.

Service calls memoise resolutions and pinned workflow versions so that a call costs one small
read of the revisions, not a rescan of the catalog. Two rules make the memo safe by
construction rather than by care at each call site:

- every entry is stored with the revision it was *computed from* (the revision read before the
  reads that produced it, and the snapshot's own revision), and a lookup answers only for
  exactly the revision it is asked about: a value read from an older snapshot can never be
  served for a newer revision, however requests interleave;
- the memo holds at most `capacity` entries, dropping the oldest first, so no sequence of
  names (a flood of unknown services, say) makes it grow without bound.

The value is immutable: `remember` returns a new memo and leaves the old one as it was.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from attrs import field, frozen

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Revision = tuple[int, ...]

DEFAULT_CAPACITY = 1024


@frozen
class RevisionMemo(Generic[K, V]):
    """Entries valid at `revision`; nothing from any other revision is kept."""

    revision: Revision = ()
    capacity: int = DEFAULT_CAPACITY
    # Insertion-ordered (dicts keep order): the first key is the oldest. Never mutated.
    entries: Mapping[K, V] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("a memo needs room for at least one entry")

    def lookup(self, key: K, revision: Revision) -> V | None:
        """The value remembered for `key` at exactly `revision`, or None."""
        if revision != self.revision:
            return None
        return self.entries.get(key)

    def remember(self, key: K, value: V, revision: Revision) -> RevisionMemo[K, V]:
        """This memo with `key` -> `value` computed at `revision`.

        A value from a newer revision starts the memo afresh (the older entries no longer hold);
        one from an older revision than the memo's is dropped: a request that read the stores
        before a change must not overwrite what a request after it found.
        """
        if _older(revision, self.revision):
            return self
        if revision != self.revision:
            return RevisionMemo(revision, self.capacity, {key: value})
        entries = dict(self.entries)
        entries.pop(key, None)
        entries[key] = value
        while len(entries) > self.capacity:
            del entries[next(iter(entries))]
        return RevisionMemo(revision, self.capacity, entries)

    def __len__(self) -> int:
        return len(self.entries)


def _older(revision: Revision, than: Revision) -> bool:
    """Whether `revision` is behind `than` in any of its parts (revisions only grow)."""
    if not than:
        return False
    return any(mine < theirs for mine, theirs in zip(revision, than, strict=False))
