"""Benchmark: how long an admin waits for `okr-sync run`, `--dry-run` and `validate` on the example.

    python benchmarks/local_run_bench.py              # 5 warm runs of each, in a scratch directory
    python benchmarks/local_run_bench.py --repeat 10

Each command runs as a new process, exactly as typed in a shell (`okr-sync ...` from the venv's
bin), with no Prefect API configured (PREFECT_API_URL unset, a scratch PREFECT_HOME), so `run` is
the in-process engine. The first run of each command warms the disk cache and is not counted.
Wall time is the median of the counted runs; memory is the largest peak RSS (ru_maxrss of the child).

Last line, machine-readable:
summary run_s=<median> dry_run_s=<median> validate_s=<median> run_vs_validate=<r> peak_rss_mb=<m>
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yaml"


def _okr_sync() -> str:
    found = Path(sys.executable).parent / "okr-sync"
    return str(found) if found.exists() else shutil.which("okr-sync") or "okr-sync"


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, the largest peak RSS in MB of any child so far: ru_maxrss of RUSAGE_CHILDREN)."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-500:]}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    exe = _okr_sync()
    with tempfile.TemporaryDirectory(prefix="okr-bench-") as scratch:
        cwd = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OKR_SYNC_"))}
        env["PREFECT_HOME"] = str(cwd / "prefect-home")
        commands = {
            "run": [exe, "run", str(EXAMPLE)],
            "dry_run": [exe, "run", str(EXAMPLE), "--dry-run"],
            "validate": [exe, "validate", str(EXAMPLE)],
        }
        medians, peak = {}, 0.0
        print(f"{'command':<28} {'median s':>9} {'min s':>7} {'max s':>7}")
        for name, cmd in commands.items():
            _timed(cmd, cwd, env)                                  # warm-up, not counted
            times = []
            for _ in range(args.repeat):
                seconds, rss = _timed(cmd, cwd, env)
                times.append(seconds)
                peak = max(peak, rss)
            medians[name] = statistics.median(times)
            label = "okr-sync " + " ".join(cmd[1:2] + (["--dry-run"] if name == "dry_run" else []))
            print(f"{label:<28} {medians[name]:>9.3f} {min(times):>7.3f} {max(times):>7.3f}")
        ratio = medians["run"] / medians["validate"]
        print(f"peak RSS of any of these processes: {peak:.0f} MB; run / validate = {ratio:.2f}")
        print(f"summary run_s={medians['run']:.3f} dry_run_s={medians['dry_run']:.3f} "
              f"validate_s={medians['validate']:.3f} run_vs_validate={ratio:.2f} peak_rss_mb={peak:.0f}")


if __name__ == "__main__":
    main()
