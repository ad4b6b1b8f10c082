"""Calls per run of the `tability` and `webhook` publish targets, for 6 and for 500 key results.

    python benchmarks/publish_calls.py [--sizes 6 500] [--changed 10]

For each size: a spreadsheet config with that many key results, published to a local Tability double
(tests/fake_tability.py) and a local webhook receiver (tests/webhook_receiver.py); three in-process syncs
into a fresh SQLite store: the first run, a rerun with nothing changed, and a rerun with `--changed`
values changed. Prints, per run and target, the check-ins delivered, the HTTP calls the target made
(as the target counts them, checked against the requests the double saw) and the seconds it took.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from connectors import okr_webhook, tability  # noqa: E402
from connectors.sql_store import open_store  # noqa: E402
from fake_tability import FakeTability  # noqa: E402
from okrsync import publish  # noqa: E402
from okrsync.config import load_plan  # noqa: E402
from okrsync.engine import RunOptions, Services, sync  # noqa: E402
from okrsync.registry import Registry, default_registry  # noqa: E402
from webhook_receiver import WebhookReceiver  # noqa: E402

TARGETS = Registry({"tability": tability, "webhook": okr_webhook}, kind="publish target",
                   problems=publish.contract_problems)


def write(folder: Path, values: list[int], outcome_ids: list[str], site: FakeTability) -> Path:
    (folder / "m.csv").write_text("name,value\n" + "".join(f"k{i},{v}\n" for i, v in enumerate(values)), encoding="utf-8")
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}", "publish:",
             f'  tability: {{type: tability, token: "${{TABILITY_TOKEN}}", workspace: acme, base_url: "{site.base_url}"}}',
             '  okr-hook: {type: webhook, url: "${OKR_HOOK_URL}", secret: "${OKR_HOOK_SECRET}"}',
             "objectives:", "  - id: obj", "    title: Objective", "    key_results:"]
    for i, outcome in enumerate(outcome_ids):
        lines.append(f"      - {{id: k{i}, title: KR {i}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, "
                     f"target: 1000, publish: {{tability: {outcome}}}}}")
    path = folder / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(size: int, changed: int) -> list[tuple[str, str, int, int, int, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, FakeTability() as site, WebhookReceiver(path="/hook/bench") as hook:
        folder = Path(tmp)
        os.environ.update(TABILITY_TOKEN=site.token, OKR_HOOK_URL=hook.url,
                          OKR_HOOK_SECRET="bench-secret-0123456789abcdef")
        plan_ = site.add_plan("Bench plan")
        outcomes = [site.add_outcome(plan_, f"Outcome {i}").id for i in range(size)]
        values = list(range(size))
        store = f"sqlite:///{folder / 'okr.db'}"
        for label, change in (("first run", 0), ("rerun, nothing changed", 0), (f"rerun, {changed} changed", changed)):
            values = [v + 1 if i < change else v for i, v in enumerate(values)]
            path = write(folder, values, outcomes, site)
            seen_tability, seen_hook = len(site.requests), len(hook.requests)
            plan = load_plan([str(path)], store=store, targets=TARGETS)
            result = sync(plan, RunOptions(), Services(registry=default_registry(), open_store=open_store, targets=TARGETS))
            for name, seen in (("tability", len(site.requests) - seen_tability), ("okr-hook", len(hook.requests) - seen_hook)):
                entry = result["publish"][name]
                assert entry["calls"] == seen, (name, entry["calls"], seen)
                assert entry["failed"] == 0, entry["messages"][:3]
                rows.append((label, name, entry["delivered"], entry["calls"], seen, entry["seconds"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 500])
    parser.add_argument("--changed", type=int, default=10)
    args = parser.parse_args()
    print(f"{'key results':>11}  {'run':<24} {'target':<9} {'delivered':>9} {'calls':>6} {'seconds':>8}")
    for size in args.sizes:
        for label, name, done, calls, _, seconds in measure(size, min(args.changed, size)):
            print(f"{size:>11}  {label:<24} {name:<9} {done:>9} {calls:>6} {seconds:>8.2f}")


if __name__ == "__main__":
    main()
