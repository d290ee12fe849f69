"""Properties of core.memo.RevisionMemo: bounded whatever is asked, and never answering with a
value from another revision than the one asked about."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.memo import RevisionMemo

revisions = st.tuples(st.integers(0, 6), st.integers(0, 6))
names = st.text(min_size=1, max_size=6)
# One step of a workload: remember (name, value made at revision), or look a name up.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("remember"), names, revisions),
        st.tuples(st.just("lookup"), names, revisions),
    ),
    max_size=200,
)


@given(steps, st.integers(1, 8))
def test_the_memo_never_holds_more_than_its_capacity(workload, capacity):
    memo: RevisionMemo[str, tuple[int, int]] = RevisionMemo(capacity=capacity)
    for action, name, revision in workload:
        if action == "remember":
            memo = memo.remember(name, revision, revision)
        assert len(memo) <= capacity


@given(steps)
def test_a_lookup_answers_only_with_a_value_made_at_the_revision_asked_about(workload):
    # Each value is the revision it was computed at, so the property reads off the answer.
    memo: RevisionMemo[str, tuple[int, int]] = RevisionMemo(capacity=4)
    for action, name, revision in workload:
        if action == "remember":
            memo = memo.remember(name, revision, revision)
        else:
            found = memo.lookup(name, revision)
            assert found is None or found == revision


@given(st.lists(st.tuples(names, revisions), min_size=1, max_size=50))
def test_a_value_from_an_older_revision_never_replaces_a_newer_memo(entries):
    memo: RevisionMemo[str, tuple[int, int]] = RevisionMemo()
    newest: tuple[int, int] | None = None
    for name, revision in entries:
        memo = memo.remember(name, revision, revision)
        if newest is None or all(a >= b for a, b in zip(revision, newest, strict=True)):
            newest = revision
        assert all(a >= b for a, b in zip(memo.revision, newest, strict=True))


@given(st.integers(1, 50), st.integers(1, 400))
def test_the_oldest_entries_go_first_and_the_newest_stay(capacity, count):
    memo: RevisionMemo[str, int] = RevisionMemo(capacity=capacity)
    for index in range(count):
        memo = memo.remember(f"name{index}", index, (1, 1))
    kept = list(memo.entries)
    assert kept == [f"name{i}" for i in range(max(0, count - capacity), count)]
    assert memo.lookup(f"name{count - 1}", (1, 1)) == count - 1


def test_remembering_leaves_the_earlier_memo_as_it_was():
    empty: RevisionMemo[str, int] = RevisionMemo()
    one = empty.remember("a", 1, (1, 1))
    assert len(empty) == 0 and one.lookup("a", (1, 1)) == 1
    assert one.lookup("a", (1, 2)) is None  # another revision: not known
