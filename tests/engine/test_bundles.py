"""Bundles: several modules registered together, importing each other by their names."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import threading

import pytest

from core.errors import InvalidWorkflowSource
from core.model import ExecutionState, WorkflowRef
from engine.bundles import MAX_BUNDLE_FILES, bundle_source, decode_bundle, encode_bundle
from engine.registration import load_workflows
from engine.sandbox import inspect_module

BILLING = textwrap.dedent(
    """
    from pydantic import BaseModel
    from flux import ExecutionContext, task, workflow
    from helpers import vat, CALLS


    class Invoice(BaseModel):
        amount: float


    @task
    async def total(amount: float) -> float:
        return vat(amount)


    @workflow.with_options(namespace="billing")
    async def invoice(ctx: ExecutionContext[Invoice]):
        '''Price an invoice.'''
        import helpers  # at run time, inside a function: still the bundle's helpers
        from . import helpers as same
        return {"total": await total(ctx.input.amount), "rate": helpers.RATE, "same": same is helpers}
    """
)

HELPERS = textwrap.dedent(
    """
    RATE = 1.2
    CALLS = []


    def vat(amount):
        CALLS.append(amount)
        return round(amount * RATE, 2)
    """
)

FILES = {"billing.py": BILLING, "helpers.py": HELPERS}


def _bundle_names() -> list[str]:
    return [name for name in sys.modules if name.startswith("_flux_workflows_")]


def test_modules_import_each_other_and_workflows_come_from_the_module_defining_them():
    (loaded,) = load_workflows(encode_bundle(FILES), "billing.py")
    assert loaded.ref == WorkflowRef("billing", "invoice")
    assert loaded.description == "Price an invoice."
    assert loaded.input_schema["required"] == ["amount"]
    assert loaded.module.__name__.endswith(".billing")
    assert loaded.module.vat(10) == 12.0
    # Nothing of the load stays in sys.modules, and nothing is named after the bundle's files.
    assert _bundle_names() == []
    assert "helpers" not in sys.modules


async def test_a_stored_bundle_runs_and_imports_its_helpers_at_run_time(engine):
    versions = await engine.register(encode_bundle(FILES), "billing.py")
    done = await engine.runtime.run(versions["invoice"], {"amount": 10})
    assert done.state is ExecutionState.COMPLETED, done.error
    assert done.output == {"total": 12.0, "rate": 1.2, "same": True}


def test_a_package_directory_with_or_without_init():
    files = {
        "flows.py": """
from flux import workflow
import pkg.tools
from pkg.tools import shout
from pkg.sub.deep import DEEP
from ns.plain import PLAIN

@workflow
async def flows(ctx):
    return [shout("hi"), pkg.tools.NAME, DEEP, PLAIN, pkg.FLAG]
""",
        "pkg/__init__.py": "FLAG = 'init ran'\n",
        "pkg/tools.py": "from .sub import deep\nNAME = deep.DEEP\n"
        "def shout(text):\n    return text.upper()\n",
        "pkg/sub/deep.py": "from .. import FLAG\nDEEP = 'deep' if FLAG else None\n",
        "ns/plain.py": "PLAIN = 'namespace package'\n",
    }
    (loaded,) = load_workflows(encode_bundle(files), "flows.py")
    module = loaded.module
    assert module.shout("hi") == "HI"
    assert (module.pkg.tools.NAME, module.DEEP, module.PLAIN, module.pkg.FLAG) == (
        "deep",
        "deep",
        "namespace package",
        "init ran",
    )


def test_workflows_are_found_in_every_module_of_the_bundle():
    files = {
        "a.py": "from flux import workflow\nfrom b import second\n\n"
        "@workflow\nasync def first(ctx):\n    return 1\n",
        "b.py": "from flux import workflow\n\n"
        "@workflow.with_options(namespace='other')\nasync def second(ctx):\n    return 2\n",
    }
    loaded = load_workflows(encode_bundle(files))
    assert [(str(item.ref), item.module.__name__.rpartition(".")[2]) for item in loaded] == [
        ("default/first", "a"),
        ("other/second", "b"),
    ]


def test_two_loads_never_share_module_state():
    source = encode_bundle(FILES)
    (one,) = load_workflows(source)
    (two,) = load_workflows(source)
    one.module.vat(1)
    assert one.module.CALLS == [1] and two.module.CALLS == []
    assert one.module.vat is not two.module.vat
    assert one.module.__name__ != two.module.__name__


def test_concurrent_loads_in_threads_see_their_own_helpers():
    sources = [
        encode_bundle({**FILES, "helpers.py": HELPERS.replace("1.2", str(rate))})
        for rate in (1.1, 1.3, 1.5, 1.7)
    ]
    results: dict[int, float] = {}
    barrier = threading.Barrier(len(sources))

    def load(index: int) -> None:
        barrier.wait()
        for _ in range(5):
            (loaded,) = load_workflows(sources[index])
            results[index] = loaded.module.vat(10)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(sources))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: 11.0, 1: 13.0, 2: 15.0, 3: 17.0}
    assert _bundle_names() == []


def test_the_hash_covers_every_file_and_not_their_order():
    first = load_workflows(encode_bundle(FILES))[0].source_hash
    reordered = encode_bundle(dict(reversed(list(FILES.items()))))
    assert load_workflows(reordered)[0].source_hash == first
    changed = encode_bundle({**FILES, "helpers.py": HELPERS.replace("1.2", "1.25")})
    assert load_workflows(changed)[0].source_hash != first
    added = encode_bundle({**FILES, "notes.py": "NOTE = 1\n"})
    assert load_workflows(added)[0].source_hash != first


def test_one_file_stays_a_plain_module_and_plain_sources_are_not_bundles():
    assert bundle_source({"billing.py": BILLING}) == (BILLING, "billing.py")
    source, filename = bundle_source(FILES)
    assert filename == "billing.py"
    assert decode_bundle(source) == FILES
    assert json.loads(source) == {"flux_bundle": 1, "files": dict(sorted(FILES.items()))}
    assert decode_bundle(BILLING) is None
    assert decode_bundle('{"some": "dict"}') is None


@pytest.mark.parametrize(
    "name",
    [
        "../evil.py",
        "pkg/../evil.py",
        "/abs.py",
        "C:/win.py",
        "pkg\\win.py",
        "notes.txt",
        ".py",
        "bad\nname.py",
        "tab\tname.py",
        "pkg//double.py",
        "./here.py",
        "a.b.py",
        "",
    ],
)
def test_a_bad_file_name_is_refused(name):
    with pytest.raises(InvalidWorkflowSource, match="bad file name"):
        encode_bundle({**FILES, name: "X = 1\n"})


def test_too_many_files_or_two_files_of_one_module_are_refused():
    many = {f"m{i}.py": "" for i in range(MAX_BUNDLE_FILES)}
    with pytest.raises(InvalidWorkflowSource, match="at most 100 files"):
        encode_bundle({**FILES, **many})
    with pytest.raises(InvalidWorkflowSource, match="both module 'pkg'"):
        encode_bundle({**FILES, "pkg.py": "", "pkg/__init__.py": ""})
    with pytest.raises(InvalidWorkflowSource, match="to be a package"):
        encode_bundle({**FILES, "pkg.py": "", "pkg/inner.py": ""})
    # A stored text is checked again when it is loaded.
    forged = json.dumps({"flux_bundle": 1, "files": {"../x.py": "X = 1"}})
    with pytest.raises(InvalidWorkflowSource, match="bad file name"):
        load_workflows(forged)


def test_a_bundle_with_no_workflow_is_refused_with_the_reason():
    with pytest.raises(InvalidWorkflowSource, match=r"bundle \(a.py, b.py\) defines no workflow"):
        load_workflows(encode_bundle({"a.py": "import b\n", "b.py": "X = 1\n"}))


def test_failures_name_the_file_and_line():
    broken = {**FILES, "helpers.py": "RATE = 1\n\nraise RuntimeError('no helpers today')\n"}
    with pytest.raises(InvalidWorkflowSource) as caught:
        load_workflows(encode_bundle(broken))
    assert caught.value.message == "helpers.py, line 3: RuntimeError: no helpers today"
    assert caught.value.details["filename"] == "helpers.py"
    syntax = {**FILES, "helpers.py": "def broken(:\n"}
    with pytest.raises(InvalidWorkflowSource, match=r"^helpers.py, line 1: "):
        load_workflows(encode_bundle(syntax))
    missing = {"billing.py": BILLING, "other.py": "X = 1\n"}
    with pytest.raises(InvalidWorkflowSource, match="No module named 'helpers'"):
        load_workflows(encode_bundle(missing))
    twice = {
        "a.py": "from flux import workflow\n@workflow\nasync def same(ctx):\n    return 1\n",
        "b.py": "from flux import workflow\n@workflow\nasync def same(ctx):\n    return 2\n",
    }
    with pytest.raises(InvalidWorkflowSource, match="defines workflow 'default/same' twice"):
        load_workflows(encode_bundle(twice))
    assert _bundle_names() == []


def test_a_bundle_module_shadows_an_installed_one_only_inside_the_bundle():
    files = {
        "wf.py": "import json\nfrom flux import workflow\n\n"
        "@workflow\nasync def wf(ctx):\n    return json.MINE\n",
        "json.py": "MINE = 'the bundle json'\n",
    }
    (loaded,) = load_workflows(encode_bundle(files))
    assert loaded.module.json.MINE == "the bundle json"
    assert not hasattr(sys.modules["json"], "MINE")


async def test_the_sandbox_reads_a_bundle():
    source = encode_bundle(FILES)
    (found,) = await inspect_module(source, "billing.py")
    assert found.ref == WorkflowRef("billing", "invoice")
    assert found.source == source
    assert found.source_hash == load_workflows(source)[0].source_hash
    with pytest.raises(InvalidWorkflowSource, match="No module named 'helpers'"):
        await inspect_module(BILLING, "billing.py")


async def test_the_worker_loader_finds_the_stored_version_of_each_workflow(engine):
    files = {
        **FILES,
        "reports.py": "from flux import workflow\nfrom helpers import vat\n\n"
        "@workflow.with_options(namespace='billing')\nasync def report(ctx):\n"
        "    return vat(100)\n",
    }
    versions = await engine.register(encode_bundle(files))
    done = await asyncio.wait_for(engine.runtime.run(versions["report"], {}), 10)
    assert (done.state, done.output) == (ExecutionState.COMPLETED, 120.0)
    loaded = await engine.loader.load(versions["report"])
    assert loaded.module.__name__.endswith(".reports")


async def test_the_sandbox_survives_a_helper_that_interrupts_or_exits():
    interrupts = {**FILES, "helpers.py": "RATE = 1\nraise KeyboardInterrupt\n"}
    with pytest.raises(InvalidWorkflowSource, match=r"helpers.py, line 2: KeyboardInterrupt"):
        await inspect_module(encode_bundle(interrupts), "billing.py")
    exits = {**FILES, "helpers.py": "import os\nos._exit(3)\n"}
    with pytest.raises(InvalidWorkflowSource, match="exit code 3"):
        await inspect_module(encode_bundle(exits), "billing.py")


def test_a_directory_sent_whole_with_its_init_is_the_bundles_package():
    files = {
        "__init__.py": "from .helpers import vat\nSTARTED = True\n",
        "flows.py": "from flux import workflow\nfrom . import STARTED, vat\nimport helpers\n\n"
        "@workflow\nasync def flows(ctx):\n    return vat(1)\n",
        "helpers.py": HELPERS,
    }
    (loaded,) = load_workflows(encode_bundle(files))
    assert loaded.module.STARTED and loaded.module.vat is loaded.module.helpers.vat
    assert loaded.module.__name__.endswith(".flows")
    assert _bundle_names() == []
