"""Benchmark: what keeping the tickets behind each count (`evidence:`) costs in API calls.

    python benchmarks/evidence_calls.py                    # 500 key results over 20,000 issues
    python benchmarks/evidence_calls.py --size 100 --issues 5000

The sync benchmark's workload (tests/loadserver/workload.py) on Jira Cloud, Jira Data Center and
GitHub, measured twice by the engine (a dry run: measuring only) against the local load server: as
written (counts keep up to 50 tickets, the default) and with `evidence: false` on every count. The
server counts every request; the goal is 0 extra calls on Data Center and GitHub (REST and GraphQL)
and at most one per distinct count query on Jira Cloud. The values must be identical: the tickets
never change the count.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from loadserver import LoadServer, generate  # noqa: E402
from loadserver.server import condition  # noqa: E402
from loadserver.workload import Workload, workload  # noqa: E402

TOKEN = "bench-token"
EMAIL = "okr-bot@example.com"


def is_count(metric: dict) -> bool:
    return ("jql" in metric or "search" in metric) and metric.get("aggregate", "count") == "count"


def without_evidence(work: Workload) -> Workload:
    out = Workload()
    for kr in work.key_results:
        metric = {**kr.metric, "evidence": False} if is_count(kr.metric) else kr.metric
        out.key_results.append(type(kr)(kr.id, kr.source, metric, kr.oracle, kr.queries, kr.target))
    return out


def distinct_counts(work: Workload) -> dict[str, int]:
    """Distinct count queries keeping evidence, per service (a count of a query read for a sum excluded)."""
    found: dict[str, set[str]] = {"jira": set(), "jira_dc": set(), "github": set()}
    scanned: dict[str, set[str]] = {"jira": set(), "jira_dc": set()}
    for kr in work.key_results:
        m = kr.metric
        if kr.source in scanned and m.get("aggregate") in ("sum", "avg", "min", "max"):
            scanned[kr.source].add(condition(m["jql"]))
        if is_count(m):
            found[kr.source].add(condition(m["jql"]) if "jql" in m else m["search"])
    return {"jira_cloud": len(found["jira"] - scanned["jira"]), "jira_dc": len(found["jira_dc"] - scanned["jira_dc"]),
            "github": len(found["github"])}


def calls(server: LoadServer, since: int) -> dict[str, int]:
    asked = server.requests[since:]
    return {"jira_cloud": sum(1 for r in asked if r.service == "jira" and not r.path.startswith("/dc")),
            "jira_dc": sum(1 for r in asked if r.service == "jira" and r.path.startswith("/dc")),
            "github": sum(1 for r in asked if r.service == "github")}


def measure(server: LoadServer, work: Workload, folder: Path) -> tuple[dict[str, int], dict[str, float], int]:
    from flows.services import local_services
    from okrsync.config import load_plan
    from okrsync.engine import RunOptions, sync

    config = folder / "okrs.yaml"
    config.write_text(work.config(jira_url=server.jira_cloud_url, github_api=server.github_api,
                                  jira_dc_url=server.jira_dc_url, jira_timeout=60, github_timeout=60), encoding="utf-8")
    before = len(server.requests)
    result = sync(load_plan([config]), RunOptions(dry_run=True), local_services())
    values = {r["id"]: r["value"] for r in result["key_results"]}
    kept = sum(r.get("evidence_count") or 0 for r in result["key_results"])
    return calls(server, before), values, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--dc-share", type=float, default=0.3)
    args = parser.parse_args()
    os.environ.update({"JIRA_API_TOKEN": TOKEN, "JIRA_EMAIL": EMAIL, "GITHUB_TOKEN": TOKEN})
    work = workload(args.size, seed=11, duplication=0.4, dc_share=args.dc_share)
    data = generate(args.issues, seed=7)
    with tempfile.TemporaryDirectory(prefix="okr-evidence-") as tmp, \
            LoadServer(data, token=TOKEN, email=EMAIL, jira_rate=None, github_search_per_minute=None,
                       github_core_per_hour=None, graphql_points_per_hour=None, lifetime=3600) as server:
        plain, plain_values, _ = measure(server, without_evidence(work), Path(tmp))
        kept, kept_values, tickets = measure(server, work, Path(tmp))
    bound = distinct_counts(work)
    print(f"{args.size} key results over {args.issues:,} issues; {sum(1 for kr in work.key_results if is_count(kr.metric))} "
          f"count key results keep {tickets:,} tickets in all\n")
    print("| service | calls, evidence: false | calls, evidence (default 50) | extra | distinct count queries |")
    print("|---|---|---|---|---|")
    for name in ("jira_cloud", "jira_dc", "github"):
        print(f"| {name} | {plain[name]} | {kept[name]} | {kept[name] - plain[name]} | {bound[name]} |")
    same = plain_values == kept_values
    print(f"\nvalues identical with and without evidence: {'yes' if same else 'NO'}")
    print("summary " + json.dumps({name: kept[name] - plain[name] for name in kept}) + f" identical={same}")


if __name__ == "__main__":
    main()
