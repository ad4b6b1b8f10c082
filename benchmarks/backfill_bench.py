"""Benchmark: `okr-sync backfill` of a quarter, weekly, at 500 key results, on the local load server.

    python benchmarks/backfill_bench.py                          # 50,000 issues, 500 key results, 50 ms a request
    python benchmarks/backfill_bench.py --issues 5000 --size 100 # a quick look

The key results are the sync benchmark's workload (tests/loadserver/workload.py: Jira counts, percent
done, story-point sums and averages, bug ratios on Jira Cloud and Data Center; GitHub search counts,
ratios, merge-time medians and milestones; 40% of them repeat another's query), each made able to look
back the way the docs recommend: `AND created <= "{as_of}"` on every JQL, `created:<={as_of}` on every
GitHub search. Milestones cannot look back and are skipped (listed by the backfill). The quarter is
2026-Q3 (already over), weekly from its first day: 14 dates.

It runs `okr-sync backfill CONFIG --json` as a user would (a process of its own, in-process engine),
then the same command again (idempotent: it must write and ask nothing). The server counts every
request. `dates x distinct` is the bound the issue sets: the distinct queries one date asks (after
the dedup a run does), times the dates; Jira pages of a sum and the batches' fixed calls come on top.

The last line is machine-readable:
summary calls=<n> bound=<dates x distinct> seconds=<wall> rerun_calls=<n> written=<n>
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from loadserver import LoadServer, generate  # noqa: E402
from loadserver.server import condition  # noqa: E402
from loadserver.workload import Workload, workload  # noqa: E402

TOKEN = "bench-token"
EMAIL = "okr-bot@example.com"
QUARTER = ("2026-07-01", "2026-09-30")
DATES = 14                                       # 07-01, 07-08, ... 09-30


def looking_back(work: Workload, evidence: bool = True) -> Workload:
    """The workload with every query made to read the past ({as_of}); milestones stay as they are.
    Without `evidence`, counts say `evidence: false` (no tickets kept: Jira Cloud's extra call goes)."""
    out = Workload()
    for kr in work.key_results:
        metric = dict(kr.metric)
        if not evidence and ("jql" in metric or "search" in metric) and metric.get("aggregate", "count") == "count":
            metric["evidence"] = False
        for key in ("jql", "jql_done", "jql_total"):
            if key in metric:
                cond, _, order = metric[key].partition(" ORDER BY")
                metric[key] = f'{cond} AND created <= "{{as_of}}"' + (f" ORDER BY{order}" if order else "")
        for key in ("search", "search_done", "search_total"):
            if key in metric:
                metric[key] += " created:<={as_of}"
        out.key_results.append(replace(kr, metric=metric))
    return out


def distinct_per_date(work: Workload) -> dict[str, int]:
    """Distinct questions one date asks, per service, after a run's dedup (ORDER BY aside; a
    percent_done is two counts; a count of a query whose issues are read for a sum is free)."""
    jira: dict[str, set[str]] = {"jira": set(), "jira_dc": set()}
    scans: dict[str, set[str]] = {"jira": set(), "jira_dc": set()}
    github, milestones = set(), set()
    for kr in work.key_results:
        m = kr.metric
        if kr.source in jira:
            if "jql_done" in m:
                jira[kr.source] |= {condition(m["jql_done"]), condition(m["jql_total"])}
            elif m.get("aggregate", "count") in ("sum", "avg", "min", "max"):
                scans[kr.source].add(condition(m["jql"]))
            elif m.get("aggregate") == "percent_done":
                jira[kr.source] |= {condition(m["jql"]), f"({condition(m['jql'])}) done"}
            else:
                jira[kr.source].add(condition(m["jql"]))
        elif "milestone" in m:
            milestones.add(m["repo"])
        else:
            github |= {m[k] for k in ("search", "search_done", "search_total") if k in m}
    return {"jira_cloud": len((jira["jira"] - scans["jira"]) | scans["jira"]),
            "jira_dc": len((jira["jira_dc"] - scans["jira_dc"]) | scans["jira_dc"]),
            "github": len(github), "skipped_milestone_repos": len(milestones)}


def warm(server: LoadServer, work: Workload) -> None:
    """Evaluate every query of every date once on the server, so the client's timing is not the
    server's first look at 50,000 issues (the sync benchmark warms it the same way)."""
    day = date.fromisoformat(QUARTER[0])
    for _ in range(DATES):
        fill = {"{as_of}": day.isoformat(), "{period.start}": QUARTER[0], "{period.end}": QUARTER[1]}
        for kr in work.key_results:
            for key, text in kr.metric.items():
                if not isinstance(text, str):
                    continue
                for placeholder, value in fill.items():
                    text = text.replace(placeholder, value)
                if key.startswith("jql"):
                    server.jira_matching(condition(text))
                    if kr.metric.get("aggregate") == "percent_done":
                        server.jira_matching(f"({condition(text)}) AND statusCategory = Done")
                elif key.startswith("search"):
                    server.github_matching(text)
        day += timedelta(weeks=1)


def count(server: LoadServer, since: int) -> dict[str, int]:
    asked = server.requests[since:]
    return {"jira_cloud": sum(1 for r in asked if r.service == "jira" and not r.path.startswith("/dc")),
            "jira_dc": sum(1 for r in asked if r.service == "jira" and r.path.startswith("/dc")),
            "github": sum(1 for r in asked if r.service == "github"),
            "github_graphql": sum(1 for r in asked if r.service == "github" and r.path == "/api/graphql")}


def backfill(config: Path, store: str, env: dict[str, str]) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "okrsync.cli", "backfill", str(config), "--store", store,
                           "--from", QUARTER[0], "--to", QUARTER[1], "--every", "1w", "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"backfill failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=50_000, help="Jira issues in the dataset (GitHub items: a fifth)")
    parser.add_argument("--size", type=int, default=500, help="key results")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits before each answer")
    parser.add_argument("--dc-share", type=float, default=0.3, help="share of Jira key results on Data Center")
    parser.add_argument("--no-evidence", action="store_true", help="counts keep no tickets (`evidence: false`)")
    args = parser.parse_args()

    data = generate(args.issues, seed=7)
    work = looking_back(workload(args.size, seed=11, duplication=0.4, dc_share=args.dc_share), not args.no_evidence)
    distinct = distinct_per_date(work)
    print(f"dataset: {len(data.jira):,} Jira issues, {len(data.github):,} GitHub items; {args.size} key results; "
          f"latency {args.latency * 1000:.0f} ms; rate limits off; evidence {'off' if args.no_evidence else 'on'}",
          flush=True)
    env = {**os.environ, "JIRA_API_TOKEN": TOKEN, "JIRA_EMAIL": EMAIL, "GITHUB_TOKEN": TOKEN,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("PREFECT_API_URL", None)
    with tempfile.TemporaryDirectory(prefix="okr-backfill-bench-") as tmp, \
            LoadServer(data, token=TOKEN, email=EMAIL, latency=args.latency, jira_rate=None,
                       github_search_per_minute=None, github_core_per_hour=None, graphql_points_per_hour=None,
                       lifetime=7200) as server:
        config = Path(tmp) / "okrs.yaml"
        text = work.config(jira_url=server.jira_cloud_url, github_api=server.github_api,
                           jira_dc_url=server.jira_dc_url, jira_timeout=60, github_timeout=60)
        config.write_text(text.replace("period: 2026-Q4", "period: 2026-Q3"), encoding="utf-8")
        store = f"sqlite:///{Path(tmp) / 'okr.db'}"
        started = time.perf_counter()
        warm(server, work)
        print(f"server warmed up in {time.perf_counter() - started:.0f} s", flush=True)
        before = len(server.requests)
        first, wall = backfill(config, store, env)
        calls = count(server, before)
        before = len(server.requests)
        second, rewall = backfill(config, store, env)
        recalls = count(server, before)

    c = first["counts"]
    total = calls["jira_cloud"] + calls["jira_dc"] + calls["github"]
    per_date = distinct["jira_cloud"] + distinct["jira_dc"] + distinct["github"]
    bound = DATES * per_date
    print(f"\nbackfill {first['from']}..{first['to']} weekly: {first['dates']} dates, {c['backfilled']} key results "
          f"backfilled, {c['skipped']} skipped (milestones), {c['written']} check-ins written, {c['failed']} failed")
    reasons: dict[str, int] = {}
    for row in first["key_results"]:
        for failure in row["errors"]:
            reason = failure["error"].split(":")[0][:90]
            reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  failed (first errors of each key result): {n} x {reason}")
    print()
    print("| service | distinct queries a date | dates x distinct | API calls | of which GraphQL |")
    print("|---|---|---|---|---|")
    for name in ("jira_cloud", "jira_dc", "github"):
        graphql = str(calls["github_graphql"]) if name == "github" else "-"
        print(f"| {name} | {distinct[name]} | {DATES * distinct[name]} | {calls[name]} | {graphql} |")
    print(f"| all | {per_date} | {bound} | {total} | |")
    print()
    print(f"wall time {wall:.1f} s (okr-sync's own figure {first['seconds']:.1f} s, the rest is the process start); "
          f"a second backfill: {recalls['jira_cloud'] + recalls['jira_dc'] + recalls['github']} calls, "
          f"{second['counts']['written']} written, {second['counts']['already']} already there, {rewall:.1f} s")
    print(f"summary calls={total} bound={bound} seconds={wall:.1f} "
          f"rerun_calls={recalls['jira_cloud'] + recalls['jira_dc'] + recalls['github']} written={c['written']}")


if __name__ == "__main__":
    main()
