"""`okr-sync run --prefect` on a machine with no Prefect API configured: Prefect's temporary server
runs in a process of its own, and the run's process never loads Prefect's server code (it would
cost about 80 MB and a second); the server is gone when the command returns."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# runs the CLI as `okr-sync` does, then says on stderr what the process loaded and which children it left
PROBE = """
import json, subprocess, sys
from okrsync.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    code = done.code
server_modules = sorted(m for m in sys.modules if m.startswith("prefect.server.api"))
children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(__import__("os").getpid())], capture_output=True,
                          text=True).stdout.split()
print("PROBE " + json.dumps({"code": code, "server_modules": server_modules, "children": len(children) - 1}),
      file=sys.stderr)
"""


def test_a_prefect_run_without_a_configured_api_starts_prefects_server_outside_the_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "OKR_SYNC_STORE"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180", PYTHONPATH=str(REPO))
    store = f"sqlite:///{tmp_path / 'okr.db'}"
    done = subprocess.run([sys.executable, "-c", PROBE, "run", str(REPO / "config" / "example.yaml"), "--prefect",
                           "--json", "--store", store], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    probe = json.loads(done.stderr.split("PROBE ")[-1])
    assert probe["code"] in (0, None), done.stderr
    result = json.loads(done.stdout)
    assert result["counts"]["synced"] == result["counts"]["key_results"] == 7
    assert result["flow_run"]["id"]                       # a real flow run, on the temporary server
    assert result["flow_run"]["url"] is None              # a server that stops with the command has no page to keep
    assert probe["server_modules"] == []                  # Prefect's server code stayed out of the run's process
    assert probe["children"] == 0                         # and the server was stopped before the command returned
    assert "Traceback" not in done.stderr and "Stopping temporary server" not in done.stderr


def test_a_temporary_server_that_does_not_answer_in_time_is_one_line_and_leaves_nothing_running(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "OKR_SYNC_STORE"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", PROBE, "run", str(REPO / "config" / "example.yaml"), "--prefect",
                           "--store", f"sqlite:///{tmp_path / 'okr.db'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    probe = json.loads(done.stderr.split("PROBE ")[-1])
    said = done.stderr.split("PROBE ")[0].strip()
    assert probe["code"] == 1 and probe["children"] == 0
    assert "temporary Prefect server did not answer in time" in said and "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in said
    assert len(said.splitlines()) == 1 and "Traceback" not in done.stderr
    assert "check-ins written" not in done.stdout                        # nothing was run
