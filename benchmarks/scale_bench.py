"""Benchmark: one run for the whole organisation, 5,000 key results in one file and across 50 team files.

    python benchmarks/scale_bench.py                  # 50,000 issues, 50 ms; every case below
    python benchmarks/scale_bench.py --repeat 3       # each sync case three times (ranges)
    python benchmarks/scale_bench.py --skip-500 --no-local

Against the project's load server (tests/loadserver: Jira Cloud and GitHub over a generated
dataset, every answer delayed `--latency`, rate limits off) it runs `okr-sync run CONFIG... --prefect`
exactly as the CLI does (typer's app called in a client process of its own; the temporary Prefect
server the CLI starts when no Prefect API is configured, flows/temporary_server.py, started there
first, not counted, and used by the run), for:

- 500 key results in one file (the sync benchmark's largest size);
- 5,000 key results in one file;
- the same 5,000 key results across 50 files of 100, each file with its own `jira` and `github`
  sources (identical settings, as teams copy them);
- (unless --no-local) the 50 files again with `--no-prefect`, the in-process engine.

Each row gives the wall time of the command (config load to the printed table), the API calls the
server counted, peak RSS (ru_maxrss of the client process; Prefect's temporary server runs in a
process of its own, and its code is never loaded into the client's), and a phase breakdown taken by wrapping okr-sync's own functions:
config load, the store check before measuring, measuring (first batch started to last batch
done), assessment, the store write, the summary, artifacts, the table, and the flow run's time
around the engine (`flow_overhead`: Prefect's start and end of the run, its task runs and results);
what of that exceeds one warm empty flow run's fixed cost (measured in the same process) is
Prefect's bookkeeping. The floor is distinct queries x latency / 4 (requests in flight per
service); `vs floor` is wall / (floor + that fixed cost). Own work is the sum of config, store
check, assessment, store write, summary, artifacts, table and Prefect's bookkeeping.

Then, on the same 5,000 key results: `okr-sync validate` of the 5,000 against validate of
config/example.yaml (each a fresh process, median of 3); `okr-sync status` on a store of 5,000 key
results x 30 check-ins (150,000; its own work timed in-process: the SQL and the table; and as a
fresh process, also `status CONFIG` and `history KR`); `okr-sync serve --check` over the 50 files
(fresh process, median of 3).

The last line is machine-readable:
summary kr=5000 files=50 calls=<n> calls_vs_one_file=<r> wall_vs_floor=<w> own_seconds=<s>
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests", REPO / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

TOKEN = "bench-token"
EMAIL = "okr-bot@example.com"
IN_FLIGHT = 4
EXAMPLE = REPO / "config" / "example.yaml"
PHASES = ("config", "store_check", "measuring", "assess", "store_write", "summary", "artifacts", "table",
          "flow_overhead", "prefect_bookkeeping")
OWN = ("config", "store_check", "assess", "store_write", "summary", "artifacts", "table", "prefect_bookkeeping")

# ---------------------------------------------------------------------------- the client process


class _Timers:
    """Seconds spent in wrapped functions, by phase (calls counted too)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.calls[phase] = self.calls.get(phase, 0) + 1

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - started)

        setattr(owner, name, timed)

    def wrap_generator(self, owner: Any, name: str, phase: str) -> None:
        """A method yielding results: timed from the call to its exhaustion (the caller's work between
        two results included, which for `measure_all` is a dict update and a progress tick)."""
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                yield from original(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - started)

        setattr(owner, name, timed)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def client_run(configs: list[str], store: str, prefect: bool, out_file: str) -> dict[str, Any]:
    """`okr-sync run CONFIGS --store STORE --prefect|--no-prefect` in this process, timed by phase."""
    import okrsync.cli as cli
    import okrsync.engine as engine
    import okrsync.render as render

    timers = _Timers()
    captured: dict[str, Any] = {}
    prefect_start = prefect_run = 0.0
    server = contextlib.ExitStack()
    if prefect:
        from prefect import flow

        import flows.artifacts as artifacts
        import flows.sync as flow_module
        from flows.temporary_server import temporary_server

        @flow(name="bench-warm-up")
        def warm_up() -> int:
            return 1

        started = time.perf_counter()
        # the temporary server the CLI starts when no Prefect API is configured, started here first (not
        # counted) and kept for the run, which finds it configured and uses it
        server.enter_context(temporary_server())
        warm_up()
        prefect_start = time.perf_counter() - started
        started = time.perf_counter()
        warm_up()
        prefect_run = time.perf_counter() - started
        timers.wrap(flow_module, "load_plan", "config_in_flow")     # must stay 0: the CLI hands its plan over
        timers.wrap(flow_module, "sync", "engine")
        timers.wrap_generator(flow_module.PrefectExecutor, "measure_all", "measuring")
        timers.wrap(artifacts, "publish", "artifacts")
        timers.wrap(cli, "_run_as_flow", "flow_run")
    timers.wrap(cli, "load_plan", "config")
    timers.wrap(cli, "check_owners", "store_check")
    timers.wrap(cli, "sync", "engine")
    timers.wrap_generator(engine.LocalExecutor, "measure_all", "measuring")
    for name, phase in (("prepare_store", "store_check"), ("assess_all", "assess"), ("write_checkins", "store_write"),
                        ("summary", "summary"), ("scrub_data", "summary"), ("apply_report", "summary")):
        timers.wrap(engine, name, phase)
    original_table = render.run_table

    def table(console: Any, result: dict[str, Any], **options: Any) -> None:
        captured["result"] = result
        started = time.perf_counter()
        original_table(console, result, **options)
        timers.add("table", time.perf_counter() - started)

    render.run_table = table
    rss_before = _rss_mb()
    args = ["run", *configs, "--store", store, "--prefect" if prefect else "--no-prefect"]
    stdout = sys.stdout
    with server, open(out_file, "w", encoding="utf-8") as sink:
        sys.stdout = sink
        started = time.perf_counter()
        try:
            code = cli.app(args, standalone_mode=False)
        finally:
            wall = time.perf_counter() - started
            sys.stdout = stdout
    result = captured.get("result") or {}
    phases = dict(timers.seconds)
    engine_s = phases.pop("engine", 0.0)
    flow_s = phases.pop("flow_run", 0.0)
    if prefect:   # what the flow run spent besides the engine and the artifacts; beyond a flow run's fixed cost
        phases["flow_overhead"] = max(0.0, flow_s - engine_s - phases.get("artifacts", 0.0))
        phases["prefect_bookkeeping"] = max(0.0, phases["flow_overhead"] - prefect_run)
    return {"wall": wall, "exit_code": code, "prefect_start": prefect_start, "prefect_run": prefect_run,
            "phases": phases, "calls_of": dict(timers.calls), "rss_before_mb": rss_before, "peak_rss_mb": _rss_mb(),
            "values": {r["id"]: r["value"] for r in result.get("key_results", [])},
            "errors": {r["id"]: r["error"] for r in result.get("key_results", []) if r["error"]},
            "source_calls": result.get("source_calls")}


def client_status(store: str, out_file: str) -> dict[str, Any]:
    """`okr-sync status --store STORE` in this process: the command's own time, its SQL, its table."""
    import okrsync.cli as cli
    import okrsync.render as render
    from connectors import sql_store

    timers = _Timers()
    timers.wrap(sql_store.SqlStore, "key_results", "sql")
    timers.wrap(render, "status_table", "table")
    stdout = sys.stdout
    with open(out_file, "w", encoding="utf-8") as sink:
        sys.stdout = sink
        started = time.perf_counter()
        try:
            cli.app(["status", "--store", store], standalone_mode=False)
        finally:
            wall = time.perf_counter() - started
            sys.stdout = stdout
    return {"own": wall, "phases": timers.seconds, "peak_rss_mb": _rss_mb()}

# ---------------------------------------------------------------------------- the parent


def _fill(text: str) -> str:
    return text.replace("{period.start}", "2026-10-01").replace("{period.end}", "2026-12-31")


def _warm(server: Any, work: Any) -> None:
    """Evaluate every query once on the server, so no run pays for the server's first look."""
    for kr in work.key_results:
        for key, text in kr.metric.items():
            if isinstance(text, str) and key.startswith("jql"):
                jql = _fill(text).split(" ORDER BY")[0]
                server.jira_matching(jql)
                server.jira_matching(f"({jql}) AND statusCategory = Done")
            elif isinstance(text, str) and key.startswith("search"):
                server.github_matching(text)


def write_configs(work: Any, files: int, folder: Path, jira_url: str, github_api: str) -> list[str]:
    """The workload's key results in `files` config files of equal share, each with its own sources and
    objective (ids stay unique across files)."""
    from loadserver.workload import Workload

    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(work.key_results) // files)
    paths = []
    for n in range(files):
        part = Workload(work.key_results[n * per:(n + 1) * per])
        text = part.config(jira_url=jira_url, github_api=github_api)
        if files > 1:
            text = text.replace("  - id: load\n", f"  - id: load-{n:02d}\n", 1)
        path = folder / (f"team-{n:02d}.yaml" if files > 1 else "okrs.yaml")
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths


def _child(args: list[str], env: dict[str, str], timeout: float = 1800) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _timed_process(cmd: list[str], env: dict[str, str], repeat: int, ok: tuple[int, ...] = (0,)) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=600)
        times.append(time.perf_counter() - started)
        if done.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return times


def _okr_sync() -> list[str]:
    return [sys.executable, "-m", "okrsync.cli"]


def _wrong(values: dict, expected: dict) -> int:
    return sum(1 for k, want in expected.items()
               if want is not None and (values.get(k) is None or abs(float(values[k]) - want) > 1e-6 * max(1, abs(want))))


def sync_case(name: str, server: Any, work: Any, configs: list[str], store: str, prefect: bool, latency: float,
              env: dict[str, str], tmp: Path) -> dict[str, Any]:
    expected = work.expected(server.data)
    before = server.count()
    got = _child(["--client-run", store, "--prefect" if prefect else "--no-prefect",
                  str(tmp / f"table-{name}.txt"), *configs], env)
    got["calls"] = server.count() - before
    got["kr"], got["files"], got["name"], got["prefect"] = len(work.key_results), len(configs), name, prefect
    got["distinct"] = work.distinct_queries()
    got["floor"] = got["distinct"] * latency / IN_FLIGHT
    got["wrong"] = _wrong(got["values"], expected)
    got["should_fail"] = sum(1 for v in expected.values() if v is None)
    got["own"] = sum(got["phases"].get(p, 0.0) for p in OWN)
    got["vs_floor"] = got["wall"] / (got["floor"] + got["prefect_run"])
    del got["values"]
    return got


def fill_store(store: str, configs: list[str], checkins_per_kr: int) -> int:
    """A store holding every key result of `configs` with `checkins_per_kr` automatic check-ins each
    (one a day, values moving), written through the store's own write_sync, one run per day."""
    from datetime import datetime, timedelta, timezone

    from connectors.sql_store import open_store
    from okrsync.config import load_plan
    from okrsync.engine import owned_record
    from okrsync.records import CheckinRecord

    plan = load_plan(configs, store)
    records = [owned_record(plan, kr) for kr in plan.key_results]
    start = datetime(2026, 10, 1, 7, tzinfo=timezone.utc)
    written = 0
    with open_store(store) as s:
        for day in range(checkins_per_kr):
            moment = start + timedelta(days=day)
            checkins = [CheckinRecord(kr_id=kr.id, value=float(day * 3 + i % 7), progress=day / 90, expected=day / 92,
                                      status=("on_track", "at_risk", "off_track", "done")[(i + day) % 4],
                                      observed_at=moment, source=kr.source_key, query="q", link=None,
                                      run_id=f"fill-{day}")
                        for i, kr in enumerate(plan.key_results)]
            report = s.write_sync(run_id=f"fill-{day}", started_at=moment, objectives=plan.objectives,
                                  key_results=records, checkins=checkins, config_files=plan.files, failed=0)
            written += len(report.written)
    return written


def _row(r: dict[str, Any]) -> str:
    p = r["phases"]
    how = "Prefect" if r["prefect"] else "in-process"
    return (f"| {r['kr']:,} | {r['files']} | {how} | {r['wall']:.2f} | {r['floor']:.2f} | {r['prefect_run']:.2f} "
            f"| {r['vs_floor']:.2f} | {r['calls']:,} | {r['calls'] / r['kr']:.2f} | {r['own']:.2f} "
            f"| {r['peak_rss_mb']:.0f} | {r['wrong']} | "
            + " | ".join(f"{p.get(k, 0.0):.2f}" for k in PHASES) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=50_000, help="Jira issues in the dataset (GitHub items: a fifth)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits before each answer")
    parser.add_argument("--size", type=int, default=5000, help="key results of the large cases")
    parser.add_argument("--files", type=int, default=50, help="files the large case is split into")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each sync case")
    parser.add_argument("--skip-500", action="store_true", help="leave out the 500-key-result case")
    parser.add_argument("--no-local", action="store_true", help="leave out the in-process (--no-prefect) case")
    parser.add_argument("--checkins", type=int, default=30, help="check-ins per key result in the status store")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from loadserver import LoadServer, generate
    from loadserver.workload import workload

    started = time.perf_counter()
    data = generate(args.issues, seed=args.seed)
    print(f"dataset: {len(data.jira):,} Jira issues, {len(data.github):,} GitHub items (seed {args.seed}); "
          f"latency {args.latency * 1000:.0f} ms; rate limits off", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OKR_SYNC_"))}
    env.update({"JIRA_API_TOKEN": TOKEN, "JIRA_EMAIL": EMAIL, "GITHUB_TOKEN": TOKEN,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "ERROR",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
    rows: list[dict[str, Any]] = []
    big = workload(args.size, seed=11, duplication=0.4)
    with tempfile.TemporaryDirectory(prefix="okr-scale-") as scratch, \
            LoadServer(data, token=TOKEN, email=EMAIL, latency=args.latency, jira_rate=None,
                       github_search_per_minute=None, github_core_per_hour=None, graphql_points_per_hour=None,
                       lifetime=7200) as server:
        tmp = Path(scratch)
        env["PREFECT_HOME"] = str(tmp / "prefect")
        _warm(server, big)
        one = write_configs(big, 1, tmp / "one", server.jira_cloud_url, server.github_api)
        many = write_configs(big, args.files, tmp / "many", server.jira_cloud_url, server.github_api)
        cases: list[tuple[str, Any, list[str], bool]] = []
        if not args.skip_500:
            small = workload(500, seed=11, duplication=0.4)
            cases.append(("500x1", small, write_configs(small, 1, tmp / "small", server.jira_cloud_url,
                                                         server.github_api), True))
        cases += [(f"{args.size}x1", big, one, True), (f"{args.size}x{args.files}", big, many, True)]
        if not args.no_local:
            cases.append((f"{args.size}x{args.files}-local", big, many, False))
        for name, work, configs, prefect in cases:
            for attempt in range(args.repeat):
                store = f"sqlite:///{tmp / f'okr-{name}-{attempt}.db'}"
                row = sync_case(name, server, work, configs, store, prefect, args.latency, env, tmp)
                rows.append(row)
                print(f"{name}: wall {row['wall']:.2f} s, {row['calls']} calls, own {row['own']:.2f} s, "
                      f"Prefect start {row['prefect_start']:.1f} s, exit {row['exit_code']}, "
                      f"{len(row['errors'])} failed ({row['should_fail']} must), {row['wrong']} wrong, "
                      f"config loaded in the flow {row['calls_of'].get('config_in_flow', 0)} time(s) "
                      f"[{time.perf_counter() - started:.0f} s so far]", flush=True)

        # validate, status, serve --check
        validate_big = _timed_process(_okr_sync() + ["validate", *one], env, 3)
        validate_example = _timed_process(_okr_sync() + ["validate", str(EXAMPLE)], env, 3)
        serve_check = _timed_process(_okr_sync() + ["serve", "--check", *many], env, 3)
        status_store = f"sqlite:///{tmp / 'status.db'}"
        fill_started = time.perf_counter()
        checkins = fill_store(status_store, one, args.checkins)
        fill_s = time.perf_counter() - fill_started
        status = _child(["--client-status", status_store, str(tmp / "status.txt")], env)
        status_process = _timed_process(_okr_sync() + ["status", "--store", status_store], env, 3)
        status_config = _timed_process(_okr_sync() + ["status", *one, "--store", status_store], env, 1)
        history = _timed_process(_okr_sync() + ["history", big.key_results[0].id, "--store", status_store], env, 3)

    print()
    print("| key results | files | run | wall s | floor s | Prefect fixed s | vs floor+fixed | API calls | calls/KR "
          "| own work s | peak RSS MB | wrong values | " + " | ".join(f"{p} s" for p in PHASES) + " |")
    print("|" + "---|" * (12 + len(PHASES)))
    for r in rows:
        print(_row(r))
    print()
    med = statistics.median
    print(f"validate, {args.size:,} key results: {med(validate_big):.2f} s; config/example.yaml: "
          f"{med(validate_example):.2f} s; ratio {med(validate_big) / med(validate_example):.2f} (medians of 3 processes)")
    print(f"status on {checkins:,} check-ins ({args.size:,} key results; store filled in {fill_s:.0f} s): own work "
          f"{status['own']:.2f} s (SQL {status['phases'].get('sql', 0):.2f} s, table {status['phases'].get('table', 0):.2f} s); "
          f"as a process {med(status_process):.2f} s (median of 3); `status CONFIG` {status_config[0]:.2f} s; "
          f"`history KR` {med(history):.2f} s (median of 3)")
    print(f"serve --check over {args.files} files: {med(serve_check):.2f} s (median of 3 processes)")
    one_file = [r for r in rows if r["name"] == f"{args.size}x1"]
    spread = [r for r in rows if r["name"] == f"{args.size}x{args.files}"]
    calls_one = med([r["calls"] for r in one_file])
    last = spread[-1]
    print()
    print(f"summary kr={args.size} files={args.files} calls={last['calls']} "
          f"calls_vs_one_file={last['calls'] / calls_one:.2f} wall_vs_floor={last['vs_floor']:.2f} "
          f"own_seconds={last['own']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client-run":
        store_url, mode, out_path, *paths = sys.argv[2:]
        print(json.dumps(client_run(paths, store_url, mode == "--prefect", out_path), default=str))
    elif len(sys.argv) > 1 and sys.argv[1] == "--client-status":
        print(json.dumps(client_status(sys.argv[2], sys.argv[3]), default=str))
    else:
        main()
