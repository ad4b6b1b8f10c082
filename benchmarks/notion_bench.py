"""Calls per run of the Notion publish target, for 6 and 500 key results, against tests/fake_notion.py.

    python benchmarks/notion_bench.py                    # 6 and 500 key results, with a check-ins database
    python benchmarks/notion_bench.py --sizes 6,100 --no-checkins

For each size: a first run (every key result's row written, a check-in row each), a rerun with nothing
changed, and a rerun with 10 values changed (all of them when there are fewer). Each run is an
in-process sync (okrsync.engine) of spreadsheet key results into a fresh SQLite store, publishing to the
double over real HTTP. The double enforces Notion's 3 requests a second in its own clock, which the
connector's waits move instead of sleeping, so the script prints how long each run would take at
Notion's rate ("at 3/s") and how long okr-sync itself took ("wall"). The target's `deadline:` is 3600 s
so that a first run of 500 key results finishes in one run; the last column says how many check-ins the
default deadline (120 s) lets one run deliver.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests"):
    sys.path.insert(0, str(extra))

TOKEN = "secret_benchmark-token-0000000000"


class ServerClock:
    """connectors._http.clock following the double's clock: a wait moves it instead of sleeping."""

    def __init__(self, server):
        self.server = server

    def sleep(self, seconds: float) -> None:
        self.server.advance(seconds)

    def monotonic(self) -> float:
        return self.server.now()

    def now(self):
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.server.now(), timezone.utc)


def config_text(server, space, values: dict[str, float], checkins: bool, deadline: int) -> str:
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}", "publish:", "  okr-notion:",
             "    type: notion", '    token: "${NOTION_TOKEN}"', f"    key_results: {space.krs_db}",
             f"    base_url: {server.url}", f"    deadline: {deadline}"]
    if checkins:
        lines.append(f"    checkins: {space.checkins_db}")
    lines += ["objectives:", "  - id: obj", "    title: Obj", "    key_results:"]
    lines += [f"      - {{id: {k}, title: {k}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, target: 1000}}"
              for i, k in enumerate(values)]
    return "\n".join(lines) + "\n"


def one_size(size: int, checkins: bool) -> list[tuple[str, int, int, float, float, int | None]]:
    import connectors.notion as notion
    from connectors import _http
    from connectors.sql_store import open_store
    from fake_notion import FakeNotion, okr_workspace
    from okrsync import publish
    from okrsync.config import load_plan
    from okrsync.engine import RunOptions, Services, sync
    from okrsync.registry import Registry, default_registry

    targets = Registry({"notion": notion}, kind="publish target", problems=publish.contract_problems)
    ids = [f"kr-{i:04d}" for i in range(size)]
    rows = []
    with FakeNotion(TOKEN, lifetime=3600) as server, tempfile.TemporaryDirectory(prefix="okr-notion-bench-") as tmp:
        _http.clock = ServerClock(server)
        space = okr_workspace(server, ids)
        values = {k: float(i % 900) for i, k in enumerate(ids)}
        config, csv = Path(tmp) / "okrs.yaml", Path(tmp) / "m.csv"

        def run(label: str, deadline: int = 3600) -> tuple[int, int, float, float]:
            csv.write_text("name,value\n" + "".join(f"{k},{v:g}\n" for k, v in values.items()), encoding="utf-8")
            config.write_text(config_text(server, space, values, checkins, deadline), encoding="utf-8")
            before, at = server.count(), server.now()
            started = time.perf_counter()
            plan = load_plan([str(config)], store=f"sqlite:///{tmp}/okr.db", targets=targets)
            result = sync(plan, RunOptions(), Services(registry=default_registry(), open_store=open_store, targets=targets))
            wall = time.perf_counter() - started
            report = result["publish"]["okr-notion"]
            assert report["failed"] == 0, report["messages"][:3]
            assert report["calls"] == server.count() - before
            return report["delivered"], report["calls"], server.now() - at, wall

        delivered, calls, notion_s, wall = run("first")
        rows.append(("first run", delivered, calls, notion_s, wall, None))
        delivered, calls, notion_s, wall = run("rerun")
        rows.append(("rerun, nothing changed", delivered, calls, notion_s, wall, None))
        for k in ids[:10]:
            values[k] += 1
        delivered, calls, notion_s, wall = run("changed")
        rows.append((f"rerun, {min(10, size)} changed", delivered, calls, notion_s, wall, None))
        assert len(server.rows(space.krs)) == size
        if checkins:
            assert len(server.rows(space.checkins)) == size + min(10, size)
    # how far one run gets with the default deadline (a fresh workspace and store)
    with FakeNotion(TOKEN, lifetime=3600) as server, tempfile.TemporaryDirectory(prefix="okr-notion-bench-") as tmp:
        _http.clock = ServerClock(server)
        space = okr_workspace(server, ids)
        config, csv = Path(tmp) / "okrs.yaml", Path(tmp) / "m.csv"
        csv.write_text("name,value\n" + "".join(f"{k},{i % 900}\n" for i, k in enumerate(ids)), encoding="utf-8")
        config.write_text(config_text(server, space, {k: 0 for k in ids}, checkins, 120), encoding="utf-8")
        plan = load_plan([str(config)], store=f"sqlite:///{tmp}/okr.db", targets=targets)
        result = sync(plan, RunOptions(), Services(registry=default_registry(), open_store=open_store, targets=targets))
        first = rows[0]
        rows[0] = first[:5] + (result["publish"]["okr-notion"]["delivered"],)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6,500")
    parser.add_argument("--no-checkins", action="store_true", help="no check-ins database")
    args = parser.parse_args()
    os.environ["NOTION_TOKEN"] = TOKEN
    checkins = not args.no_checkins
    print(f"Notion publish target, {'with' if checkins else 'without'} a check-ins database")
    print(f"{'key results':>11}  {'run':<24} {'delivered':>9} {'calls':>6} {'takes':>8} {'wall':>7} "
          f"{'by 120 s':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        for label, delivered, calls, notion_s, wall, by_default in one_size(size, checkins):
            shown = "" if by_default is None else str(by_default)
            print(f"{size:>11}  {label:<24} {delivered:>9} {calls:>6} {notion_s:>7.1f}s {wall:>6.2f}s {shown:>8}")


if __name__ == "__main__":
    main()
