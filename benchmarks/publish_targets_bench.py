"""Benchmark: API calls (and seconds) per run of the google_sheets and jira publish targets, 6 and 500 key results.

    python benchmarks/publish_targets_bench.py                # 6 and 500 key results
    python benchmarks/publish_targets_bench.py --sizes 6 50
    python benchmarks/publish_targets_bench.py --comment off  # Jira without comments

For each size, one in-process sync (the real engine, a CSV source, a scratch SQLite store) publishes to
three targets at once against the test doubles over HTTP on 127.0.0.1 (tests/fake_gsheets.py,
tests/fake_jira.py): a Google Sheet, Jira Cloud and Jira Data Center (both with `comment: on_change`, or
`--comment off`).
Then a rerun with nothing changed, then a rerun with 10 values changed. Calls are the targets' own count
(`calls` of each target's client, every HTTP request including the token request); the doubles' request
logs are checked against it. Seconds are the target's delivery time on this machine against a local
double (no network latency: a real site adds its round trips, most for Jira's per-issue edits).

Last line, machine-readable:
summary <target>_<size>_<first|same|changed>=<calls> ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from connectors import google_sheets_target, jira_target  # noqa: E402
from connectors.sql_store import open_store  # noqa: E402
from fake_gsheets import FakeGoogle, FakeSpreadsheet, FakeTab, service_account_info  # noqa: E402
from fake_jira import KR_FIELDS, FakeIssue, FakeJira  # noqa: E402
from okrsync import publish  # noqa: E402
from okrsync.config import load_plan  # noqa: E402
from okrsync.engine import RunOptions, Services, sync  # noqa: E402
from okrsync.registry import Registry, default_registry  # noqa: E402

AS_OF = datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)
SHEET_ID = "1BenchSheetAbCdEfGhIjKlMnOpQrStUvWxYz012345"
EMAIL, TOKEN = "okr-bot@example.com", "bench-token-0123456789"
TARGETS = Registry({"google_sheets": google_sheets_target, "jira": jira_target}, kind="publish target",
                   problems=publish.contract_problems)


def write(folder: Path, n: int, google: FakeGoogle, cloud: FakeJira, dc: FakeJira, changed: int = 0,
          comment: str = "on_change") -> Path:
    (folder / "m.csv").write_text("name,value\n" + "".join(f"kr{i},{i % 97 + (1000 if i < changed else 0)}\n"
                                                           for i in range(n)), encoding="utf-8")
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv, deadline: 600}", "publish:",
             f"  sheet: {{type: google_sheets, spreadsheet: {SHEET_ID}, sheet: OKRs, service_account: "
             f"\"${{GOOGLE_SA_JSON}}\", api_base: \"{google.api_base}\"}}",
             f"  cloud: {{type: jira, url: \"{cloud.url}\", email: \"${{JIRA_EMAIL}}\", token: \"${{JIRA_TOKEN}}\", "
             f"field: KR value, comment: {comment}, deadline: 600}}",
             f"  dc: {{type: jira, url: \"{dc.url}\", token: \"${{JIRA_TOKEN}}\", field: KR value, comment: {comment}, "
             "deadline: 600}",
             "objectives:", "  - id: obj", "    title: Obj", "    key_results:"]
    for i in range(n):
        lines.append(f"      - {{id: kr{i}, title: KR {i}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, "
                     f"target: 100, publish: {{cloud: OKR-{i + 1}, dc: OKR-{i + 1}}}}}")
    path = folder / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_size(n: int, comment: str) -> dict[str, dict[str, tuple[int, float]]]:
    google = FakeGoogle({SHEET_ID: FakeSpreadsheet(SHEET_ID, "Bench", [FakeTab(0, "OKRs", [
        ["KR id", "Title", "Current", "Progress", "Status", "Last sync", "Source"]]
        + [[f"kr{i}", f"KR {i}"] for i in range(n)])])}, shared={SHEET_ID}, editors={SHEET_ID},
        reads_per_minute=None, writes_per_minute=None)
    issues = [FakeIssue(i + 1, project="OKR", type="Key Result") for i in range(n)]
    out: dict[str, dict[str, tuple[int, float]]] = {}
    with google.serve(), FakeJira(issues, email=EMAIL, token=TOKEN, fields=KR_FIELDS) as cloud, \
            FakeJira(issues, deployment="Server", token=TOKEN, fields=KR_FIELDS) as dc, \
            tempfile.TemporaryDirectory(prefix="okr-publish-bench-") as scratch:
        os.environ.update(GOOGLE_SA_JSON=json.dumps(service_account_info(google.token_uri)), JIRA_EMAIL=EMAIL,
                          JIRA_TOKEN=TOKEN)
        folder = Path(scratch)
        store = f"sqlite:///{folder / 'okr.db'}"
        for label, changed in (("first", 0), ("same", 0), ("changed", 10)):
            seen = {"sheet": len(google.requests), "cloud": len(cloud.calls), "dc": len(dc.calls)}
            path = write(folder, n, google, cloud, dc, changed, comment)
            plan = load_plan([str(path)], store=store, targets=TARGETS)
            result = sync(plan, RunOptions(as_of=AS_OF), Services(registry=default_registry(), open_store=open_store,
                                                                  targets=TARGETS))
            served = {"sheet": len(google.requests), "cloud": len(cloud.calls), "dc": len(dc.calls)}
            for name, report in result["publish"].items():
                if report["failed"]:
                    raise SystemExit(f"{name} failed at {n} key results: {report['messages'][:3]}")
                if report["calls"] != served[name] - seen[name]:
                    raise SystemExit(f"{name}: the target counted {report['calls']} calls, the double saw "
                                     f"{served[name] - seen[name]}")
                out.setdefault(name, {})[label] = (report["calls"], report["seconds"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 500])
    parser.add_argument("--comment", choices=["on_change", "off"], default="on_change", help="the Jira targets' comment:")
    args = parser.parse_args()
    summary = []
    print(f"{'target':<8}{'key results':>12}{'first run':>20}{'rerun, same':>20}{'rerun, 10 changed':>22}")
    for n in args.sizes:
        for name, runs in one_size(n, args.comment).items():
            cells = [f"{runs[k][0]} calls {runs[k][1]:5.2f} s" for k in ("first", "same", "changed")]
            print(f"{name:<8}{n:>12}{cells[0]:>20}{cells[1]:>20}{cells[2]:>22}")
            summary += [f"{name}_{n}_{k}={runs[k][0]}" for k in ("first", "same", "changed")]
    print("summary " + " ".join(summary))


if __name__ == "__main__":
    main()
