"""Hypothesis strategies shared by the core properties: small catalogs where names repeat
across namespaces, and selectors that mix known and unknown namespaces and refs."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from core.model import CatalogSnapshot, WorkflowInfo, WorkflowRef

# Few namespaces and names, so that shared names (collisions) and overlaps are common.
NAMESPACES = ("a", "b", "c", "d")
NAMES = ("x", "y", "z", "w", "v")
UNKNOWN_NAMESPACE = "e"  # never in a catalog
UNKNOWN_NAME = "q"

CORE = settings(max_examples=80, deadline=None)

namespaces = st.sampled_from((*NAMESPACES, UNKNOWN_NAMESPACE))
refs = st.builds(
    WorkflowRef,
    namespaces,
    st.sampled_from((*NAMES, UNKNOWN_NAME)),
)
catalog_refs = st.builds(WorkflowRef, st.sampled_from(NAMESPACES), st.sampled_from(NAMES))


@st.composite
def catalogs(draw) -> CatalogSnapshot:
    chosen = draw(st.lists(catalog_refs, unique=True, max_size=len(NAMESPACES) * len(NAMES)))
    infos = tuple(
        WorkflowInfo(ref, draw(st.integers(1, 4)), draw(st.none() | st.just({"type": "object"})))
        for ref in chosen
    )
    return CatalogSnapshot(draw(st.integers(0, 1000)), infos)


@st.composite
def selectors(draw) -> dict[str, list]:
    """Raw selector lists, in any order and with repeats, as a user might type them."""
    return {
        "namespaces": draw(st.lists(namespaces, max_size=6)),
        "workflows": draw(st.lists(refs, max_size=6)),
        "exclusions": draw(st.lists(refs | catalog_refs, max_size=6)),
    }
