"""Make docs/report.png: the example config's report as a person sees it, in headless Chromium.

    python scripts/report_screenshot.py [--out docs/report.png] [--page checkout] [--width 1280]

In a temporary folder: `okr-sync run config/example.yaml`, `okr-sync backfill config/example.yaml` when this
okr-sync has it (a history for the charts), one manual check-in, `okr-sync report`, then a full-page
screenshot of one objective's page. Needs the `report` extra and Chromium (apt-get install chromium).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "example.yaml"


def okr_sync(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OKR_SYNC_STORE": f"sqlite:///{cwd / 'okr-sync.db'}", "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "okrsync.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and done.returncode not in (0, 1):
        raise SystemExit(f"okr-sync {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    parser.add_argument("--page", default="checkout", help="the objective whose page to show")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    browser = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="okr-report-shot-") as tmp:
        work = Path(tmp)
        okr_sync("run", str(EXAMPLE), "--no-prefect", cwd=work)
        if "backfill" in okr_sync("--help", cwd=work).stdout:
            okr_sync("backfill", str(EXAMPLE), cwd=work)
        okr_sync("checkin", "checkout-nps", "41", "--note", "survey re-run", cwd=work)
        okr_sync("report", str(EXAMPLE), "--out", str(work / "site"), cwd=work)
        page = work / "site" / "objectives" / f"{args.page}.html"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={args.width},1500", f"--screenshot={args.out.resolve()}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
