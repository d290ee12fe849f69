"""Targets of issue 8 as ratios within one run, the markdown table, and the result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MIB = 1024


def _run(results: dict[str, Any], scenario: str, concurrency: int, case: str = "") -> dict | None:
    for row in results.get(scenario, {}).get("runs", []):
        if row["concurrency"] == concurrency and case in row["case"]:
            return row
    return None


def _target(
    key: str, what: str, measured: float | None, required: str, met: bool | None, detail: str
) -> dict[str, Any]:
    return {
        "target": key,
        "description": what,
        "measured": None if measured is None else round(measured, 3),
        "required": required,
        "met": met,
        "detail": detail,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    sync16, ceil16 = _run(results, "sync", 16), _run(results, "ceiling", 16)
    if sync16 and ceil16 and ceil16["ops_per_s"]:
        ratio = sync16["ops_per_s"] / ceil16["ops_per_s"]
        found.append(
            _target(
                "throughput",
                "sync call c16 req/s (worker processes) / ceiling c16 req/s",
                ratio,
                ">= 0.25",
                ratio >= 0.25,
                f"{sync16['ops_per_s']} / {ceil16['ops_per_s']} req/s",
            )
        )
    sync1 = _run(results, "sync", 1)
    if sync1:
        p50 = sync1["p50_ms"]
        found.append(
            _target("latency", "sync call c1 p50 (ms)", p50, "<= 3 ms", p50 <= 3.0, f"{p50} ms")
        )
    sync64 = _run(results, "sync", 64)
    if sync64 and sync64["p50_ms"]:
        ratio = sync64["p99_ms"] / sync64["p50_ms"]
        found.append(
            _target(
                "tail",
                "sync call c64 p99 / p50",
                ratio,
                "<= 10",
                ratio <= 10,
                f"p99 {sync64['p99_ms']} ms, p50 {sync64['p50_ms']} ms",
            )
        )
    direct = _run(results, "standalone", 16, "directly")
    proxied = _run(results, "standalone", 16, "standalone")
    if direct and proxied and direct["ops_per_s"]:
        ratio = proxied["ops_per_s"] / direct["ops_per_s"]
        found.append(
            _target(
                "standalone",
                "standalone c16 req/s / direct c16 req/s",
                ratio,
                ">= 0.6",
                ratio >= 0.6,
                f"{proxied['ops_per_s']} / {direct['ops_per_s']} req/s",
            )
        )
    sizes = results.get("catalog", {}).get("catalog_sizes")
    if sizes and len(sizes) == 2:
        small = _run(results, "catalog", 16, f"of {sizes[0]} ")
        large = _run(results, "catalog", 16, f"of {sizes[1]} ")
        if small and large and small["ops_per_s"]:
            ratio = large["ops_per_s"] / small["ops_per_s"]
            found.append(
                _target(
                    "catalog",
                    f"c16 req/s with {sizes[1]} workflows / with {sizes[0]}",
                    ratio,
                    ">= 0.9",
                    ratio >= 0.9,
                    f"{large['ops_per_s']} / {small['ops_per_s']} req/s",
                )
            )
    isolated = _run(results, "isolation", 16, "worker processes")
    shared = _run(results, "isolation", 16, "isolation none")
    if isolated and shared and shared["ops_per_s"]:
        ratio = isolated["ops_per_s"] / shared["ops_per_s"]
        found.append(
            _target(
                "isolation",
                "sync c16 req/s, worker processes / --isolation none (informative)",
                ratio,
                "(none)",
                None,
                f"server CPU per call {isolated['server_cpu_us_per_call']} us vs "
                f"{shared['server_cpu_us_per_call']} us; with the workers "
                f"{isolated['family_cpu_us_per_call']} us",
            )
        )
    two, one = _run(results, "cpu", 8, "2 worker"), _run(results, "cpu", 8, "1 worker")
    if two and one and one["ops_per_s"]:
        ratio = two["ops_per_s"] / one["ops_per_s"]
        found.append(
            _target(
                "cpu-bound",
                "5 ms CPU-bound workflow c8 req/s, 2 workers / 1 worker",
                ratio,
                ">= 1.6",
                ratio >= 1.6,
                f"{two['ops_per_s']} / {one['ops_per_s']} req/s",
            )
        )
    on_sqlite = _run(results, "postgres", 16, "SQLite")
    for mode in ("local worker processes", "replica mode"):
        on_pg = _run(results, "postgres", 16, mode)
        if on_sqlite and on_pg and on_sqlite["ops_per_s"]:
            ratio = on_pg["ops_per_s"] / on_sqlite["ops_per_s"]
            found.append(
                _target(
                    f"postgres ({mode})",
                    f"sync c16 req/s on PostgreSQL ({mode}) / on SQLite",
                    ratio,
                    ">= 0.7",
                    ratio >= 0.7,
                    f"{on_pg['ops_per_s']} / {on_sqlite['ops_per_s']} req/s",
                )
            )
    for concurrency in (1, 16):
        plain = _run(results, "idempotency", concurrency, "without a key")
        keyed = _run(results, "idempotency", concurrency, "fresh Idempotency-Key")
        if plain and keyed and plain.get("server_cpu_us_per_call"):
            ratio = keyed["server_cpu_us_per_call"] / plain["server_cpu_us_per_call"]
            found.append(
                _target(
                    f"idempotency c{concurrency}",
                    f"server CPU per sync call c{concurrency}, fresh Idempotency-Key / no key",
                    ratio,
                    "<= 1.15",
                    ratio <= 1.15,
                    f"{keyed['server_cpu_us_per_call']} / {plain['server_cpu_us_per_call']} us; "
                    f"{keyed['ops_per_s']} / {plain['ops_per_s']} req/s",
                )
            )
    rss = results.get("memory", {}).get("rss")
    if rss and len(rss) == 3:
        growth = (rss[2]["rss_kib"] - rss[1]["rss_kib"]) / MIB
        found.append(
            _target(
                "memory",
                f"server + workers RSS growth from {rss[1]['executions']} to "
                f"{rss[2]['executions']} executions (MiB)",
                growth,
                "<= 20 MiB",
                growth <= 20,
                " -> ".join(f"{m['rss_kib'] / MIB:.1f}" for m in rss) + " MiB",
            )
        )
    return found


def markdown(document: dict[str, Any]) -> str:
    machine = document["machine"]
    lines = [
        f"# Flux Services benchmark, {document['started_at']}",
        "",
        f"{'Quick' if document['plan']['quick'] else 'Full'} run "
        f"({document['elapsed_s']} s) at commit {machine['git_commit']}"
        f"{' (uncommitted changes)' if machine['git_dirty'] else ''}. "
        f"Machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['ram_gib']} GiB RAM, "
        f"Python {machine['python']}, aiohttp {machine['aiohttp']}, {machine['platform']}; "
        f"load average at start {machine['loadavg_at_start']}. Client, server(s) and ceiling "
        "share these cores.",
        "",
        "| Scenario | Case | Conc. | req/s | p50 ms | p99 ms | ops | errors | server CPU | CPU/op |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, scenario in document["scenarios"].items():
        for row in scenario.get("runs", []):
            case = row["case"]
            if "polls_per_op" in row:
                case += f" ({row['polls_per_op']} polls/op)"
            lines.append(
                f"| {name} | {case} | {row['concurrency']} | {row['ops_per_s']} | {row['p50_ms']} "
                f"| {row['p99_ms']} | {row['operations']} | {row['errors']} "
                f"| {_cpu(row['server_cpu_pct'])} | {_cpu_per_op(row)} |"
            )
    lines += ["", "| Target | Measured | Required | Met | Detail |", "|---|--:|---|---|---|"]
    for t in document["targets"]:
        met = {True: "yes", False: "**no**", None: "?"}[t["met"]]
        lines.append(
            f"| {t['description']} | {t['measured']} | {t['required']} | {met} | {t['detail']} |"
        )
    notes = _notes(document["scenarios"])
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _cpu(pct: float | None) -> str:
    return "" if pct is None else f"{pct:.0f}%"


def _cpu_per_op(row: dict[str, Any]) -> str:
    """Server CPU time per operation: what the ratio targets are really about on a busy box."""
    pct, rate = row.get("server_cpu_pct"), row.get("ops_per_s")
    if pct is None or not rate:
        return ""
    return f"{pct / 100 / rate * 1e6:.0f} µs"


def _notes(scenarios: dict[str, Any]) -> list[str]:
    notes = []
    durability = scenarios.get("sync", {}).get("durability")
    if durability:
        notes.append(
            f"Durability: after kill -9, {durability['completed_on_disk_after_kill_9']} COMPLETED "
            f"executions on disk for {durability['answered_200']} answered 200 "
            f"({'ok' if durability['ok'] else 'NOT OK' if durability['ok'] is False else '?'})."
        )
    registration = scenarios.get("catalog", {}).get("registration")
    if registration:
        notes.append(
            f"Catalog fill: {registration['workflows']} workflows in {registration['modules']} "
            f"modules registered in {registration['seconds']} s "
            f"({registration['workflows_per_s']} workflows/s)."
        )
    listing = scenarios.get("listing", {})
    for key, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        http, direct = listing.get(f"{key}_http"), listing.get(f"{key}_storage")
        if isinstance(http, dict) and isinstance(direct, dict):
            case = "newest 50 of a workflow"
            notes.append(
                f"List ({name}, {listing['executions_stored']} executions, {case}): "
                f"GET /executions p50 {http[case]['p50_ms']} ms, p99 {http[case]['p99_ms']} ms; "
                f"storage query p50 {direct[case]['p50_ms']} ms, p99 {direct[case]['p99_ms']} ms."
            )
    profile = scenarios.get("sync", {}).get("profile")
    if profile and profile.get("samples"):
        areas = ", ".join(f"{name} {pct}%" for name, pct in profile["by_area_pct"][:6])
        notes.append(f"Server profile (py-spy, sync c16, innermost frame): {areas}.")
    return notes


def write(results_dir: Path, stamp: str, document: dict[str, Any], table: str) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    written = [results_dir / f"{stamp}.json", results_dir / "latest.json"]
    for path in written:
        path.write_text(text)
    (results_dir / "latest.md").write_text(table)
    return [*written, results_dir / "latest.md"]
