"""Loading uploaded modules: what is found, hashes, and refused modules."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import InvalidWorkflowSource
from core.model import WorkflowInfo, WorkflowRef, WorkflowVersion
from engine.registration import WorkflowLoader, load_workflows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SOURCE = textwrap.dedent(
    '''
    from pydantic import BaseModel
    from flux import ExecutionContext, task, workflow


    class Order(BaseModel):
        customer_id: str
        amount: float


    @task
    async def price(amount: float) -> float:
        return amount * 2


    @workflow.with_options(namespace="shop")
    async def checkout(ctx: ExecutionContext[Order]):
        """Check an order out."""
        return await price(ctx.input.amount)


    @workflow
    async def echo(ctx):
        return ctx.input
    '''
)


def test_every_workflow_of_the_module_is_described():
    loaded = load_workflows(SOURCE, "shop.py")
    assert [str(item.ref) for item in loaded] == ["default/echo", "shop/checkout"]
    echo, checkout = loaded
    assert checkout.description == "Check an order out."
    assert checkout.input_schema["required"] == ["customer_id", "amount"]
    assert echo.input_schema is None and echo.input_type is None
    new = checkout.new_workflow
    assert (new.ref, new.source, new.input_schema) == (
        WorkflowRef("shop", "checkout"),
        SOURCE,
        checkout.input_schema,
    )


def test_loading_twice_gives_equal_hashes_and_a_change_anywhere_changes_them():
    first = {str(i.ref): i.source_hash for i in load_workflows(SOURCE, "shop.py")}
    again = {str(i.ref): i.source_hash for i in load_workflows(SOURCE, "shop.py")}
    changed = {str(i.ref): i.source_hash for i in load_workflows(SOURCE + "\n# note\n", "shop.py")}
    assert first == again
    assert len(set(first.values())) == 2  # the ref is part of the hash
    assert all(changed[ref] != first[ref] for ref in first)


def test_the_module_is_not_left_in_sys_modules_and_loads_are_isolated():
    before = set(sys.modules)
    counter = textwrap.dedent(
        """
        from flux import workflow
        CALLS = []

        @workflow
        async def counted(ctx):
            CALLS.append(1)
            return len(CALLS)
        """
    )
    one, two = load_workflows(counter, "c.py")[0], load_workflows(counter, "c.py")[0]
    assert not {name for name in set(sys.modules) - before if name.startswith("_flux")}
    assert one.module is not two.module
    one.module.CALLS.append(1)
    assert two.module.CALLS == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("from flux import workflow\n\ndef broken(:\n    pass\n", r"^line 3: invalid syntax"),
        ("import flux\nimport no_such_module_here\n", r"^line 2: ModuleNotFoundError: .*no_such"),
        ("x = 1\nraise ValueError('boom')\n", r"^line 2: ValueError: boom"),
        ("from flux import task\n\n@task\nasync def t():\n    pass\n", "defines no workflow"),
        (
            "from flux import workflow\n\n@workflow.with_options(name='Bad-Name')\n"
            "async def w(ctx):\n    pass\n",
            r"^line 3: InvalidName: invalid workflow name",
        ),
        (
            "from flux import workflow\n\n@workflow\nasync def a(ctx):\n    pass\n\n"
            "@workflow.with_options(name='a')\nasync def b(ctx):\n    pass\n",
            "defines workflow 'default/a' twice",
        ),
        ("import sys\nsys.exit(3)\n", r"^line 2: SystemExit: 3"),
    ],
)
def test_bad_modules_are_refused_with_the_reason(source, reason):
    with pytest.raises(InvalidWorkflowSource, match=reason) as caught:
        load_workflows(source, "bad.py")
    assert caught.value.code == "invalid_workflow_source"


def test_imported_workflows_are_not_registered_again():
    source = "from flux import workflow\nfrom tests.engine.shared_workflow import shared\n"
    with pytest.raises(InvalidWorkflowSource, match="defines no workflow"):
        load_workflows(source, "imports.py")


def test_the_example_files_load():
    billing = load_workflows((EXAMPLES / "billing.py").read_text(), "billing.py")
    analytics = load_workflows((EXAMPLES / "analytics.py").read_text(), "analytics.py")
    assert [str(i.ref) for i in billing] == [
        "billing/approve",
        "billing/invoice",
        "billing/process",
        "billing/refund",
    ]
    assert [str(i.ref) for i in analytics] == ["analytics/dashboard", "analytics/process"]
    invoice = billing[1]
    assert invoice.input_schema["properties"].keys() == {"customer_id", "amount"}


async def test_the_loader_caches_by_ref_version_and_hash():
    [echo, _] = load_workflows(SOURCE, "shop.py")
    version = WorkflowVersion(WorkflowInfo(echo.ref, 1), SOURCE, echo.source_hash)
    loader = WorkflowLoader()
    first = await loader.load(version)
    assert await loader.load(version) is first
    assert loader.cached(version) is first
    bumped = WorkflowVersion(WorkflowInfo(echo.ref, 2), SOURCE, echo.source_hash)
    assert await loader.load(bumped) is not first


async def test_the_loader_reports_a_version_whose_source_lost_the_workflow():
    version = WorkflowVersion(WorkflowInfo(WorkflowRef("default", "gone"), 1), SOURCE, "h")
    with pytest.raises(InvalidWorkflowSource, match="no longer defines"):
        await WorkflowLoader().load(version)


def test_postponed_annotations_and_forward_references_resolve():
    source = textwrap.dedent(
        """
        from __future__ import annotations

        import dataclasses
        from pydantic import BaseModel
        from flux import ExecutionContext, workflow


        class Order(BaseModel):
            lines: list[Line]


        class Line(BaseModel):
            sku: str


        @dataclasses.dataclass
        class Point:
            x: int


        @workflow
        async def ordered(ctx: ExecutionContext[Order]):
            return ctx.input


        @workflow
        async def pointed(ctx: ExecutionContext[Point]):
            return ctx.input
        """
    )
    ordered, pointed = load_workflows(source, "late.py")
    assert ordered.input_schema["properties"]["lines"]["items"] == {"$ref": "#/$defs/Line"}
    assert pointed.input_schema["required"] == ["x"]
