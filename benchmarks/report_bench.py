"""How long `okr-sync report` takes: the example config's store, and 6 and 100 key results with a
quarter of daily history (90 check-ins each, made by tests/report_history.py), on SQLite.

    python benchmarks/report_bench.py                 # sizes 6,100; 90 days; median of 5
    python benchmarks/report_bench.py --sizes 6,100,500 --days 90 --repeat 5

Two figures per size: `okr-sync report --out DIR` as a fresh process (what a person or a scheduled run
waits for: Python start, imports, the store read, charts, pages), and write_report in a warm process
(okr-sync's own work, split into reading the store, drawing charts and writing pages). Goal: 100 key
results in <= 2 s. It prints figures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from connectors.sql_store import open_store  # noqa: E402
from report_history import write_history  # noqa: E402


CPU: list[float] = []   # user + system seconds of each _cli process, in call order


def _cli(*args: str, cwd: Path, store: str) -> float:
    """Wall seconds of one `okr-sync ARGS` process; its CPU seconds go to CPU (a busy machine stretches
    wall time, CPU time much less: on an idle machine the single-threaded command takes about its CPU time)."""
    env = {**os.environ, "OKR_SYNC_STORE": store, "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "okrsync.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"okr-sync {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return seconds


def _timed_cli(repeat: int, *args: str, cwd: Path, store: str) -> tuple[float, float]:
    """Median wall and median CPU seconds of `repeat` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        walls.append(_cli(*args, cwd=cwd, store=store))
        cpus.append(CPU[-1])
    return statistics.median(walls), statistics.median(cpus)


def _warm(store_url: str, out: Path, repeat: int) -> dict[str, float]:
    """write_report in this process, its parts timed apart (median of `repeat`)."""
    from okrsync import report_charts, report_data, report_html

    parts: dict[str, list[float]] = {"read": [], "charts": [], "pages": [], "total": []}
    now = datetime.now(timezone.utc)
    with open_store(store_url) as store:
        for _ in range(repeat):
            t0 = time.perf_counter()
            data = report_data.gather(store, now=now)
            t1 = time.perf_counter()
            for kr in data.key_results:
                report_charts.burnup_svg(kr)
            t2 = time.perf_counter()
            report_html.write_site(data, out)          # draws the charts again, inside the pages
            t3 = time.perf_counter()
            parts["read"].append(t1 - t0)
            parts["charts"].append(t2 - t1)
            parts["pages"].append((t3 - t2) - (t2 - t1))
            parts["total"].append(t1 - t0 + t3 - t2)
    return {k: statistics.median(v) for k, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6,100", help="key result counts, comma separated")
    parser.add_argument("--days", type=int, default=90, help="daily check-ins per key result")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="okr-report-bench-") as tmp:
        work = Path(tmp)
        example_store = f"sqlite:///{work / 'example.db'}"
        _cli("run", str(REPO / "config" / "example.yaml"), "--no-prefect", cwd=work, store=example_store)
        cold = _timed_cli(args.repeat, "report", str(REPO / "config" / "example.yaml"), "--out",
                          str(work / "site-example"), cwd=work, store=example_store)
        warm = _warm(example_store, work / "warm-example", args.repeat)
        rows.append(("example (6 KRs, 1 check-in each)", 6, cold, warm))
        for size in (int(s) for s in args.sizes.split(",")):
            url = f"sqlite:///{work / f'h{size}.db'}"
            started = time.perf_counter()
            with open_store(url) as store:
                write_history(store, key_results=size, days=args.days)
            made = time.perf_counter() - started
            cold = _timed_cli(args.repeat, "report", "--out", str(work / f"site-{size}"), cwd=work, store=url)
            warm = _warm(url, work / f"warm-{size}", args.repeat)
            rows.append((f"{size} KRs x {args.days} daily check-ins (store made in {made:.1f} s)", size, cold, warm))
            pages = sorted((work / f"site-{size}").rglob("*.html"))
            print(f"# {size} KRs: {len(pages)} pages, {sum(p.stat().st_size for p in pages) / 1e6:.1f} MB of HTML",
                  file=sys.stderr)
    print(f"median of {args.repeat}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    print("| store | `okr-sync report` wall s | its CPU s | in-process total s | read s | charts s | pages s |")
    print("|---|---|---|---|---|---|---|")
    for name, _, (wall, cpu), warm in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {warm['total']:.2f} | {warm['read']:.2f} | {warm['charts']:.2f} | "
              f"{warm['pages']:.2f} |")


if __name__ == "__main__":
    main()
