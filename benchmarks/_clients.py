"""The two clients the benchmark times, each run in its own process (so its peak RSS is its own):

    python benchmarks/_clients.py okr-sync CONFIG STORE_URL     # the real flow, after a warm-up flow run
    python benchmarks/_clients.py baseline SPEC_JSON            # naive extraction, every matching item

Each prints one JSON line: {"seconds": wall seconds of the measured part, "prefect_start": ...,
"peak_rss_mb": ru_maxrss of this process, "values": {kr_id: value}}. API calls are counted by
the server, not here.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # Linux: kilobytes


def run_okr_sync(config: str, store: str) -> dict:
    """Warm Prefect up (its ephemeral server starts on the first flow call), then time one sync."""
    from prefect import flow

    from flows.sync import sync_okrs

    @flow(name="bench-warm-up")
    def warm_up() -> int:
        return 1

    started = time.perf_counter()
    warm_up()
    prefect_start = time.perf_counter() - started
    started = time.perf_counter()
    warm_up()
    prefect_run = time.perf_counter() - started            # a flow run's own fixed cost, server already up
    started = time.perf_counter()
    result = sync_okrs(config_paths=[config], store=store)
    seconds = time.perf_counter() - started
    values = {r["id"]: r["value"] for r in result["key_results"]}
    errors = {r["id"]: r["error"] for r in result["key_results"] if r["error"]}
    return {"seconds": seconds, "prefect_start": prefect_start, "prefect_run": prefect_run,
            "peak_rss_mb": _rss_mb(), "values": values, "errors": errors}


def run_baseline(spec_path: str) -> dict:
    """What extraction tools do: for every key result, fetch every matching issue (all pages, the
    `jira` package's enhanced search; PyGithub's paginated search) and compute on the client."""
    from github import Auth, Github
    from jira import JIRA

    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    jira = JIRA(server=spec["jira_url"], basic_auth=(spec["email"], os.environ["JIRA_API_TOKEN"]), max_retries=0,
                options={"check_update": False})
    gh = Github(auth=Auth.Token(os.environ["GITHUB_TOKEN"]), base_url=spec["github_api"], per_page=100, retry=None)
    points = "customfield_10016"

    def issues(jql: str) -> list:
        return list(jira.search_issues(jql, maxResults=False, fields=["status", points]))

    def done(issue) -> bool:
        return issue.fields.status.statusCategory.key == "done"

    values: dict[str, float | None] = {}
    for kr in spec["key_results"]:
        m = kr["metric"]
        if kr["source"] == "jira":
            if "jql_done" in m:
                total = len(issues(m["jql_total"]))
                values[kr["id"]] = 100 * len(issues(m["jql_done"])) / total if total else None
                continue
            found = issues(m["jql"])
            agg = m.get("aggregate", "count")
            if agg == "count":
                values[kr["id"]] = len(found)
            elif agg == "percent_done":
                values[kr["id"]] = 100 * sum(map(done, found)) / len(found) if found else None
            else:
                pts = [getattr(i.fields, points, None) for i in found]
                pts = [p for p in pts if p is not None]
                values[kr["id"]] = sum(pts) if agg == "sum" else (statistics.fmean(pts) if pts else None)
        else:
            if "milestone" in m:
                repo = gh.get_repo(m["repo"], lazy=True)
                found = [x for x in repo.get_milestones(state="all") if x.title == m["milestone"]]
                values[kr["id"]] = (100 * found[0].closed_issues / (found[0].open_issues + found[0].closed_issues)
                                    if found else None)
            elif "search_done" in m:
                total = sum(1 for _ in gh.search_issues(m["search_total"]))
                values[kr["id"]] = 100 * sum(1 for _ in gh.search_issues(m["search_done"])) / total if total else None
            elif m.get("aggregate", "count") == "count":
                values[kr["id"]] = sum(1 for _ in gh.search_issues(m["search"]))
            else:
                hours = [(i.pull_request.merged_at - i.created_at).total_seconds() / 3600
                         for i in gh.search_issues(m["search"], sort="created", order="desc")
                         if i.pull_request and i.pull_request.merged_at]
                values[kr["id"]] = statistics.median(hours) if hours else None
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": _rss_mb(), "values": values}


if __name__ == "__main__":
    kind = sys.argv[1]
    out = run_okr_sync(sys.argv[2], sys.argv[3]) if kind == "okr-sync" else run_baseline(sys.argv[2])
    print(json.dumps(out, default=str))
