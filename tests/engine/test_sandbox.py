"""engine.sandbox.inspect_module: modules read in a child process, and every way one can misbehave
at import answered with InvalidWorkflowSource within the time limit."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.errors import InvalidWorkflowSource
from engine import sandbox
from engine.registration import load_workflows
from engine.sandbox import inspect_module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LIMIT = 2.0  # seconds: the time limit of the slow cases

WORKFLOW = textwrap.dedent(
    """
    from flux import workflow


    @workflow
    async def fine(ctx):
        return 1
    """
)


async def refused(source: str, *, timeout: float = LIMIT, **kw) -> InvalidWorkflowSource:
    """The error of a module that must be refused, after checking it came within the limit."""
    started = time.monotonic()
    with pytest.raises(InvalidWorkflowSource) as caught:
        await inspect_module(textwrap.dedent(source), "bad.py", timeout=timeout, **kw)
    assert time.monotonic() - started < timeout + 1
    return caught.value


def alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie nobody reaped (pid 1 in a container may not) counts as dead."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_dead(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_a_good_module_reads_like_load_workflows():
    source = (EXAMPLES / "billing.py").read_text()
    found = await inspect_module(source, "billing.py")
    expected = load_workflows(source, "billing.py")
    assert [str(item.ref) for item in found] == [
        "billing/approve",
        "billing/invoice",
        "billing/process",
        "billing/refund",
    ]
    assert found == [item.new_workflow for item in expected]
    (invoice,) = [item for item in found if item.ref.name == "invoice"]
    assert invoice.input_schema is not None
    assert set(invoice.input_schema["properties"]) == {"customer_id", "amount"}
    assert invoice.description.startswith("Issue an invoice")
    assert invoice.source == source


async def test_the_child_does_not_share_the_servers_modules():
    # A module-level global in the server must not be visible to the module being read.
    source = WORKFLOW + "import sys\nassert 'tests.engine.test_sandbox' not in sys.modules\n"
    assert [str(item.ref) for item in await inspect_module(source, "m.py")] == ["default/fine"]


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def broken(:\n    pass\n", ["line 1"]),
        ("import flux_no_such_module_here\n", ["flux_no_such_module_here"]),
        ("x = 1\n", ["defines no workflow"]),
        ("raise RuntimeError('refusing to load')\n", ["RuntimeError", "refusing to load"]),
        (
            WORKFLOW + "@workflow.with_options(name='fine')\nasync def other(ctx):\n    return 2\n",
            ["default/fine", "twice"],
        ),
    ],
    ids=["syntax", "import error", "no workflow", "raises", "duplicate ref"],
)
async def test_the_reasons_of_load_workflows_come_through(source, words):
    error = await refused(source)
    with pytest.raises(InvalidWorkflowSource) as direct:
        load_workflows(source, "bad.py")
    assert error.message == direct.value.message
    assert error.details == direct.value.details
    for word in words:
        assert word in error.message


async def test_a_syntax_error_names_its_line():
    error = await refused("x = 1\n\ndef broken(:\n    pass\n")
    assert error.details["line"] == 3
    assert error.message.startswith("line 3:")


async def test_os_exit_at_import():
    error = await refused("import os\nos._exit(0)\n")
    assert "exit code 0" in error.message


async def test_a_crash_of_the_interpreter_names_the_signal():
    error = await refused("import ctypes\nctypes.string_at(0)\n")
    assert "SIGSEGV" in error.message


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
        ("raise SystemExit(3)\n", "SystemExit"),
        ("raise GeneratorExit\n", "GeneratorExit"),
        ("class Custom(BaseException):\n    pass\n\nraise Custom('no')\n", "Custom"),
    ],
)
async def test_a_base_exception_at_import_is_named(source, name):
    error = await refused(WORKFLOW + source)
    assert name in error.message
    assert "line" in error.message


async def test_a_module_that_never_finishes_importing():
    error = await refused("while True:\n    pass\n")
    assert error.message == "the module did not finish importing within 2 s"


async def test_a_module_that_sleeps_forever():
    error = await refused("import time\ntime.sleep(3600)\n")
    assert "within 2 s" in error.message


async def test_a_module_that_prints_without_end_costs_the_server_nothing():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    error = await refused(
        "import sys\nwhile True:\n    print('x' * 1000)\n    print('y' * 1000, file=sys.stderr)\n"
    )
    assert "within 2 s" in error.message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20 * 1024


async def test_output_of_the_module_does_not_corrupt_the_answer():
    noisy = WORKFLOW + textwrap.dedent(
        """
        import os, sys
        print("FLUXSBX1 not an answer")
        os.write(1, b"FLUXSBX1" + bytes(8))
        os.write(2, b"\\0" * 100_000)
        sys.stdout.flush()
        """
    )
    assert [str(item.ref) for item in await inspect_module(noisy, "m.py")] == ["default/fine"]


async def test_a_module_that_reads_stdin_reads_nothing():
    source = WORKFLOW + "import sys\nassert sys.stdin.read() == ''\n"
    assert [str(item.ref) for item in await inspect_module(source, "m.py")] == ["default/fine"]


async def test_a_module_that_allocates_ten_gib():
    error = await refused('data = b"x" * 10**10\n')
    assert "MemoryError" in error.message
    assert "memory" in error.message.split("MemoryError", 1)[1]


async def test_without_a_memory_limit_a_small_module_still_reads():
    found = await inspect_module(WORKFLOW, "m.py", memory_limit=None)
    assert [str(item.ref) for item in found] == ["default/fine"]


async def test_a_forked_grandchild_neither_holds_registration_nor_survives(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    source = WORKFLOW + textwrap.dedent(
        f"""
        import os, time
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        open({str(pid_file)!r}, "w").write(str(pid))
        """
    )
    started = time.monotonic()
    found = await inspect_module(source, "m.py", timeout=LIMIT)
    assert time.monotonic() - started < 1.5  # the answer came, not the time limit
    assert [str(item.ref) for item in found] == ["default/fine"]
    assert wait_dead(int(pid_file.read_text()))


async def test_a_module_that_forks_and_exits_leaves_no_grandchild(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    source = textwrap.dedent(
        f"""
        import os, time
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        open({str(pid_file)!r}, "w").write(str(pid))
        os._exit(5)
        """
    )
    error = await refused(source)
    assert "exit code 5" in error.message
    assert wait_dead(int(pid_file.read_text()))


async def test_a_cancelled_registration_kills_its_child(tmp_path):
    pid_file = tmp_path / "child.pid"
    source = f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\nwhile True: pass\n"
    task = asyncio.ensure_future(inspect_module(source, "m.py", timeout=30))
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_dead(int(pid_file.read_text()))


async def test_an_answer_over_the_size_cap_is_refused(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_ANSWER", 1000)
    big = WORKFLOW.replace("return 1", f'"""{"d" * 2000}"""\n    return 1')
    error = await refused(big)
    assert "too large" in error.message


async def test_registrations_run_side_by_side():
    started = time.monotonic()
    sources = [WORKFLOW.replace("fine", f"fine{i}") for i in range(4)]
    results = await asyncio.gather(*(inspect_module(s, f"m{i}.py") for i, s in enumerate(sources)))
    assert [[str(item.ref) for item in found] for found in results] == [
        [f"default/fine{i}"] for i in range(4)
    ]
    assert time.monotonic() - started < 5


def test_the_child_dies_with_a_server_killed_by_sigkill(tmp_path):
    pid_file = tmp_path / "child.pid"
    module = (
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(3600)\n"
    )
    script = (
        "import asyncio, sys\n"
        "from engine.sandbox import inspect_module\n"
        f"asyncio.run(inspect_module({module!r}, 'm.py', timeout=60))\n"
    )
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-c", script], cwd=root)
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.02)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(5)
        assert wait_dead(int(pid_file.read_text()))
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(5)


async def test_a_sandbox_with_a_spare_answers_like_the_function():
    sandbox_ = sandbox.Sandbox(timeout=LIMIT)
    try:
        source = (EXAMPLES / "billing.py").read_text()
        first = await sandbox_.inspect(source, "billing.py")
        assert first == await inspect_module(source, "billing.py")
        with pytest.raises(InvalidWorkflowSource, match="within 2 s"):
            await sandbox_.inspect("while True:\n    pass\n", "bad.py")
        with pytest.raises(InvalidWorkflowSource, match="KeyboardInterrupt"):
            await sandbox_.inspect("raise KeyboardInterrupt\n", "bad.py")
        assert await sandbox_.inspect(source, "billing.py") == first
    finally:
        await sandbox_.close()


async def test_each_module_gets_a_fresh_process_even_with_a_spare(tmp_path):
    sandbox_ = sandbox.Sandbox()
    leak = (
        WORKFLOW + "import builtins\nassert not hasattr(builtins, 'leaked')\nbuiltins.leaked = 1\n"
    )
    try:
        for _ in range(3):
            assert [str(item.ref) for item in await sandbox_.inspect(leak, "m.py")] == [
                "default/fine"
            ]
    finally:
        await sandbox_.close()


async def test_the_spare_saves_the_start_and_close_ends_it():
    sandbox_ = sandbox.Sandbox()
    try:
        await sandbox_.inspect(WORKFLOW, "m.py")
        assert sandbox_._spare is not None
        transport, _ = await sandbox_._spare  # started and importing while nobody waited
        await asyncio.sleep(0.5)  # ... and done with its imports by now
        started = time.monotonic()
        await sandbox_.inspect(WORKFLOW, "m.py")
        warm = time.monotonic() - started
        started = time.monotonic()
        await inspect_module(WORKFLOW, "m.py")
        cold = time.monotonic() - started
        assert warm < cold
        spare_pid = (await sandbox_._spare)[0].get_pid()
    finally:
        await sandbox_.close()
    assert wait_dead(spare_pid)
    assert wait_dead(transport.get_pid())
