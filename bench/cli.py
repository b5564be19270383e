"""``python -m bench``: run pgqueue and its peers on the same workload; print one table.

Each scenario runs in a fresh process of the system's own interpreter (``bench.scenario``);
this orchestrator only prepares the environment, decides the order and builds the table.
Systems take turns within each repeat, so a burst of load from elsewhere on the machine
spreads over all of them instead of hitting one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import env, reference, report, systems
from .measure import median
from .scenario import RESULT_PREFIX


@dataclass
class Plan:
    single_jobs: int
    bulk_jobs: int
    bulk_batch: int
    drain_jobs: int
    probes: int
    repeats: int
    pgbench_seconds: int
    all_configs: bool


QUICK = Plan(single_jobs=1_000, bulk_jobs=5_000, bulk_batch=1_000, drain_jobs=3_000, probes=60,
             repeats=1, pgbench_seconds=2, all_configs=False)
FULL = Plan(single_jobs=5_000, bulk_jobs=20_000, bulk_batch=1_000, drain_jobs=20_000,
            probes=300, repeats=3, pgbench_seconds=5, all_configs=True)

# Static descriptions only; config keys live with each adapter (which the orchestrator
# cannot import: the peers' modules exist only in the peers' virtualenv).
CONFIGS: dict[str, dict[str, str]] = {
    "pgqueue": {
        "defaults": "1 process, `pgqueue worker` with no pool or concurrency option",
        "threads-c10": "1 process, -P threads -c 10",
        "threads-c32": "1 process, -P threads -c 32",
        "threads-c100": "1 process, -P threads -c 100",
        "2x-threads-c10": "2 processes, -P threads -c 10 each",
        "threads-c100-E": "1 process, -P threads -c 100, task events on (-E)",
    },
    "celery": {
        "prefork-c2": "1 process + 2 prefork children, -P prefork -c 2",
        "threads-c10": "1 process, -P threads -c 10",
    },
    "celery-rabbitmq": {
        "prefork-c2": "1 process + 2 prefork children, -P prefork -c 2",
        "threads-c10": "1 process, -P threads -c 10",
    },
    "procrastinate": {
        "c10": "1 process, --concurrency 10",
        "2x-c10": "2 processes, --concurrency 10 each",
    },
    "pgqueuer": {
        "b10": "1 process, --batch-size 10",
        "2x-b10": "2 processes, --batch-size 10 each",
    },
}
#: What --quick runs (the first one also serves the latency probes in every mode).
QUICK_CONFIGS = {"pgqueue": ["defaults", "threads-c10", "threads-c100"],
                 "celery": ["threads-c10"],
                 "celery-rabbitmq": ["threads-c10"], "procrastinate": ["c10"],
                 "pgqueuer": ["b10"]}
#: Systems that keep their jobs outside Postgres (nothing to set up for --scale).
NOT_IN_POSTGRES = {"celery", "celery-rabbitmq"}


def ready(chosen: list[str], what: str = "") -> list[str]:
    """``chosen`` less the systems whose broker cannot be had: Redis is started when
    needed, RabbitMQ is skipped with a line when nothing answers; the peers'
    virtualenv is made when a peer remains (``what``: the check's name in the line)."""
    chosen = list(chosen)
    if "celery" in chosen:
        env.ensure_redis()
    if "celery-rabbitmq" in chosen and not env.amqp_ping():
        host, port = env.amqp_address()
        env.log(f"{what}celery-rabbitmq skipped: no RabbitMQ answers at {host}:{port} "
                "(start rabbitmq-server, or set BENCH_AMQP_URL)")
        chosen.remove("celery-rabbitmq")
    if any(systems.SYSTEMS[s][1] == "peers" for s in chosen):
        env.ensure_peers_venv()
    return chosen


def run_scenario(system: str, scenario: str, params: dict[str, Any],
                 setup: bool = False) -> dict[str, Any]:
    _, interpreter = systems.SYSTEMS[system]
    python = env.pgqueue_python() if interpreter == "pgqueue" else env.peers_python()
    argv = [str(python), "-m", "bench.scenario", system, scenario, json.dumps(params)]
    if setup:
        argv.append("--setup")
    env.log(f"{system}: {scenario} {json.dumps(params)}")
    proc = subprocess.run(argv, env=env.subprocess_env(), cwd=env.REPO_ROOT,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        env.log(f"{system}: {scenario} produced no result (exit {proc.returncode}):\n"
                f"{proc.stderr[-3000:]}")
        return {"error": f"no result (exit {proc.returncode})"}
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):])
    if "error" in result:
        env.log(f"{system}: {scenario} failed: {result['error']}\n{proc.stderr[-3000:]}")
    return result


def configs_for(system: str, plan: Plan) -> list[str]:
    return list(CONFIGS[system]) if plan.all_configs else QUICK_CONFIGS[system]


def compare(chosen: list[str], plan: Plan) -> dict[str, Any]:
    """Every scenario for every system; returns all raw results."""
    raw: dict[str, Any] = {name: {"single": [], "bulk": [], "drain": {}, "latency": None}
                           for name in chosen}
    for name in chosen:
        result = run_scenario(name, "setup", {}, setup=True)
        if "error" in result:
            raise SystemExit(f"bench: could not set up {name}: {result['error']}")
    for _ in range(plan.repeats):
        for name in chosen:
            raw[name]["single"].append(run_scenario(name, "single", {"jobs": plan.single_jobs}))
    for _ in range(plan.repeats):
        for name in chosen:
            raw[name]["bulk"].append(run_scenario(
                name, "bulk", {"jobs": plan.bulk_jobs, "batch": plan.bulk_batch}))
    for _ in range(plan.repeats):
        for name in chosen:
            variants = ["noop", "noop_stored"] if name == "pgqueue" else ["noop"]
            for config in configs_for(name, plan):
                for variant in variants:
                    key = f"{config}/{variant}"
                    raw[name]["drain"].setdefault(key, []).append(run_scenario(
                        name, "drain", {"config": config, "jobs": plan.drain_jobs,
                                        "variant": variant}))
    for name in chosen:
        raw[name]["latency"] = run_scenario(
            name, "latency", {"config": QUICK_CONFIGS[name][0], "probes": plan.probes})
    return raw


def _ok(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if "error" not in r]


def best_drain(runs: dict[str, list[dict[str, Any]]], variant: str) -> tuple[str, dict[str, Any]]:
    """The configuration with the best median drain rate, and its median figures."""
    best: tuple[str, dict[str, Any]] = ("", {})
    for key, results in runs.items():
        config, _, var = key.partition("/")
        good = _ok(results)
        if var != variant or not good:
            continue
        figures = {k: report.med(good, k) for k in ("rate", "worker_cpu_us", "server_cpu_us")}
        if not best[0] or (figures["rate"] or 0) > (best[1].get("rate") or 0):
            best = (config, figures)
    return best


def defaults_rows(runs: dict[str, list[dict[str, Any]]]) -> list[report.Row]:
    """What a user who never read docs/tuning.md gets (issue 18: >= 0.9x the best), next
    to ``-P threads -c 100``; each ratio is to the first row (the best configuration)."""
    rows = []
    for config, title in (("defaults", "pgqueue, no worker options (defaults)"),
                          ("threads-c100", "pgqueue, -P threads -c 100")):
        good = _ok(runs.get(f"{config}/noop", []))
        if good:
            rows.append(report.Row(label=title, drain=report.med(good, "rate"),
                                   worker_cpu=report.med(good, "worker_cpu_us"),
                                   server_cpu=report.med(good, "server_cpu_us")))
    return rows


def build_rows(raw: dict[str, Any], refs: dict[str, float] | None) -> list[report.Row]:
    rows = []
    for name, data in raw.items():
        variants = [("noop", name)]
        if name == "pgqueue":
            variants.append(("noop_stored", "pgqueue, results stored"))
        for variant, title in variants:
            config, drain = best_drain(data["drain"], variant)
            row = report.Row(label=f"{title} ({config or '?'})")
            if variant == "noop":
                row.single = report.med(_ok(data["single"]), "rate")
                row.bulk = report.med(_ok(data["bulk"]), "rate")
                latency = data["latency"] or {}
                if "error" not in latency:
                    row.p50, row.p95, row.p99 = (latency.get("p50_ms"), latency.get("p95_ms"),
                                                 latency.get("p99_ms"))
            row.drain = drain.get("rate")
            row.worker_cpu = drain.get("worker_cpu_us")
            row.server_cpu = drain.get("server_cpu_us")
            rows.append(row)
        if name == "pgqueue":
            rows.extend(defaults_rows(data["drain"]))
    if refs:
        rows.append(report.Row(label="pgbench: 1 INSERT per transaction, 1 client",
                               single=refs["insert_1client"]))
        rows.append(report.Row(
            label="pgbench: pgqueue's enqueue statement per transaction, 1 client",
            single=refs["pgqueue_insert_1client"]))
        rows.append(report.Row(
            label=f"pgbench: 1 INSERT per transaction after idle gaps "
                  f"(~{reference.THROTTLED_RATE}/s), 1 client",
            p50=refs["insert_idle_p50_ms"], p95=refs["insert_idle_p95_ms"],
            p99=refs["insert_idle_p99_ms"]))
        rows.append(report.Row(label="pgbench: insert+claim+delete per transaction, 4 clients",
                               drain=refs["queue_cycle_4clients"]))
    return rows


def describe_configs(raw: dict[str, Any], plan: Plan) -> str:
    lines = [f"Workload: {plan.single_jobs:,} single enqueues; {plan.bulk_jobs:,} bulk-enqueued "
             f"in batches of {plan.bulk_batch:,}; drain of {plan.drain_jobs:,} pre-filled no-op "
             f"jobs; {plan.probes} latency probes (idle worker); medians of {plan.repeats} "
             "run(s)."]
    for name, data in raw.items():
        parts = []
        for key, results in data["drain"].items():
            config, _, variant = key.partition("/")
            good = _ok(results)
            rate = report.med(good, "rate") if good else None
            suffix = ", results stored" if variant == "noop_stored" else ""
            figure = f"{rate:,.0f}/s" if rate else "failed"
            parts.append(f"{config} [{CONFIGS[name][config]}{suffix}]: {figure}")
        lines.append(f"- {name} drain: " + "; ".join(parts))
        paired = [a["rate"] / b["rate"] for a, b in zip(
            data["drain"].get("defaults/noop", []), data["drain"].get("threads-c100/noop", []),
            strict=False) if a.get("rate") and b.get("rate")]
        if paired:
            lines.append(f"- {name} defaults / -P threads -c 100, each round's pair: "
                         + ", ".join(f"{r:.2f}" for r in paired)
                         + f" (median {median(paired):.2f}x; target >= 0.9x)")
        latency = data["latency"] or {}
        lines.append(f"- {name} latency config: {latency.get('config', '?')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one run, one worker config each (under 2 minutes)")
    parser.add_argument("--systems", help="comma-separated subset of: "
                        + ", ".join(systems.SYSTEMS) + " (default: all; with --scale: "
                        "pgqueue, and the Postgres peers named here get the "
                        "open-transaction check too; with --producers: the Celery rows "
                        "named here run beside pgqueue's and pgbench's)")
    parser.add_argument("--scale", action="store_true",
                        help="run the scale checks (pgqueue: 1M future jobs + 1M results; "
                             "a long-open transaction) instead of the comparison")
    parser.add_argument("--producers", action="store_true",
                        help="run the many-producers check (16 processes calling delay() "
                             "against pgbench with 16 clients, and Celery on Redis and "
                             "RabbitMQ) instead of the comparison")
    parser.add_argument("--repeats", type=int, help="runs per figure (median is reported)")
    parser.add_argument("--drain-jobs", type=int, help="jobs per drain run")
    parser.add_argument("--hold", type=float,
                        help="--scale: seconds the other session keeps its transaction open")
    parser.add_argument("--backlog", type=int,
                        help="--scale: future jobs and finished results to add (each)")
    parser.add_argument("--history", type=int, metavar="N",
                        help="--scale: run the history check alone with N finished results "
                             "(default 10,000,000; 300,000 with --quick)", nargs="?",
                        const=0, default=None)
    parser.add_argument("--per-day", type=int, metavar="N",
                        help="--scale --history: results per day partition (default 1,000,000)")
    parser.add_argument("--worker-config", metavar="CONFIG",
                        help="--scale: pgqueue worker config (default threads-c10; see CONFIGS)")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan.repeats = args.repeats
    if args.drain_jobs:
        plan.drain_jobs = args.drain_jobs
    args.systems_given = args.systems is not None
    chosen = [s.strip() for s in (args.systems or ",".join(systems.SYSTEMS)).split(",")
              if s.strip()]
    unknown = [s for s in chosen if s not in systems.SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(systems.SYSTEMS)}")

    started = time.monotonic()
    env.ensure_database()
    if args.producers:
        from . import producers

        return producers.main(quick=args.quick, repeats=args.repeats,
                              systems=chosen if args.systems_given else None)
    if args.scale:
        from . import scale

        if any(systems.SYSTEMS[s][1] == "peers" for s in chosen):
            env.ensure_peers_venv()
        if args.history is not None:
            run_scenario("pgqueue", "setup", {}, setup=True)
            return scale.main_history(plan_quick=args.quick, history=args.history or None,
                                      per_day=args.per_day, run_scenario=run_scenario,
                                      config=args.worker_config)
        for name in chosen:
            if name not in NOT_IN_POSTGRES:
                run_scenario(name, "setup", {}, setup=True)
        return scale.main(plan_quick=args.quick, hold=args.hold, backlog=args.backlog,
                          run_scenario=run_scenario, config=args.worker_config,
                          systems=chosen if args.systems_given else ["pgqueue"])
    chosen = ready(chosen)
    if not chosen:
        raise SystemExit("bench: nothing left to run")

    raw = compare(chosen, plan)
    refs = reference.run(plan.pgbench_seconds)
    rows = build_rows(raw, refs)
    base = rows[0] if chosen[0] == "pgqueue" else report.Row("none")
    table = report.render(rows, base)
    details = describe_configs(raw, plan)

    env.RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (env.RESULTS_DIR / f"run-{stamp}.json").write_text(json.dumps(
        {"plan": plan.__dict__, "raw": raw, "reference": refs}, indent=1))
    (env.RESULTS_DIR / "latest.md").write_text(f"{table}\n\n{details}\n")
    print()
    print(table)
    print()
    print(details)
    print(f"\nRatios are each figure ÷ pgqueue's (first row). Raw results: "
          f"bench/results/run-{stamp}.json. Took {time.monotonic() - started:.0f}s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
