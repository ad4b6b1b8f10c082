"""Every command block of docs/operate.md, run as written against a real `prefect server start`, so the
page cannot drift from the code; and the systemd units in deploy/systemd/, which run the same commands.

A block is marked by the HTML comment on the line before it:

    <!-- test: run -->              run by bash (-e, pipefail) in a fresh shell; it must exit 0
    <!-- test: background NAME -->  started by bash and kept running (NAME says when it is ready), then
                                    stopped: serve with SIGTERM to okr-sync alone, as `systemctl stop` does
                                    (KillMode=mixed), the others with SIGINT to their group, as Ctrl-C does
    <!-- test: not run: REASON -->  only a block that changes the machine (every line `sudo ...`) or needs Docker

Each shell starts from the test's environment without any PREFECT_* variable or OKR_SYNC_STORE (a
new terminal), with PREFECT_HOME in a temporary directory, the venv's bin first on PATH, and a
made-up JIRA_API_TOKEN for the secret block. The blocks run in a copy of the repository. Their text
is changed in two places only: the port 4200 becomes a free one, and the PostgreSQL URL
`postgresql+psycopg://okr@db.internal/okr` the test's database (a SQLite file when PostgreSQL is
not reachable). For speed, the runner and the worker poll every 2 s instead of 10 s
(PREFECT_RUNNER_POLL_FREQUENCY, PREFECT_WORKER_QUERY_SECONDS).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import REPO

OPERATE = REPO / "docs" / "operate.md"
UNITS = REPO / "deploy" / "systemd"
DOCS_PORT = "4200"
DOCS_PG = "postgresql+psycopg://okr@db.internal/okr"
INSTALLED_BIN = "/opt/okr-sync/.venv/bin/"
MARKER = re.compile(r"^<!-- test: (run|background (?P<name>[\w-]+)|not run: (?P<reason>.+?)) -->$")
FENCE = re.compile(r"^```(\w*)\s*$")
SHELLS = {"bash", "sh", "shell", "console"}
NOT_RUN_REASONS = ("changes the machine", "needs a Docker daemon")
FAKE_TOKEN = "docs-test-jira-token-0123456789"


@dataclass
class Block:
    line: int
    kind: str                 # run | background | not run
    text: str
    name: str = ""
    reason: str = ""


@dataclass
class Shells:
    """The processes the page starts, and what each printed."""

    workdir: Path
    env: dict[str, str]
    port: int
    background: dict[str, tuple[subprocess.Popen, Path]] = field(default_factory=dict)
    outputs: list[tuple[Block, str]] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def log(self, name: str) -> str:
        return self.background[name][1].read_text(errors="replace")


def command_blocks(path: Path = OPERATE) -> list[Block]:
    """The shell blocks of a page with their markers; a shell block without one fails the test."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) in SHELLS:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(before)
            assert marker, f"{path.name}:{i + 1}: a command block without a `<!-- test: ... -->` marker"
            kind = "background" if marker.group("name") else "not run" if marker.group("reason") else "run"
            blocks.append(Block(i + 1, kind, "\n".join(lines[i + 1:end]) + "\n",
                                marker.group("name") or "", marker.group("reason") or ""))
        i = end + 1
    return blocks


def commands(text: str) -> list[str]:
    """The command lines of a block, comments and `export` lines left out."""
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "export "))]


def exports(text: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)=(\S+)", text, re.M))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(what: str, probe, timeout: float, shells: Shells | None = None, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = probe()
        except requests.RequestException:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {name} ---\n{shells.log(name)[-2000:]}" for name in shells.background) if shells else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{logs}")
        time.sleep(every)


# ------------------------------------------------------------------------------- the page's rules


def test_every_command_block_is_marked_and_only_machine_changes_go_unrun():
    blocks = command_blocks()
    assert [b.name for b in blocks if b.kind == "background"] == ["prefect-server", "serve", "worker"]
    assert sum(b.kind == "run" for b in blocks) >= 5
    for block in blocks:
        if block.kind != "not run":
            continue
        assert block.reason.startswith(NOT_RUN_REASONS), f"operate.md:{block.line}: not run because {block.reason!r}?"
        if block.reason.startswith("changes the machine"):
            assert all(line.startswith("sudo ") for line in commands(block.text)), \
                f"operate.md:{block.line}: a block left unrun for changing the machine may hold only `sudo` lines"


# ---------------------------------------------------------------------------------- the units


def unit(name: str) -> dict[str, list[str]]:
    """A systemd unit's settings: key -> every value given (Environment= may repeat)."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def environment(settings: dict[str, list[str]]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in settings.get("Environment", []))


@pytest.mark.parametrize("unit_name, block_name", [("prefect-server.service", "prefect-server"),
                                                   ("okr-sync-serve.service", "serve")])
def test_each_unit_runs_the_pages_command_with_the_pages_settings(unit_name, block_name):
    settings = unit(unit_name)
    block = next(b for b in command_blocks() if b.name == block_name)
    (exec_start,) = settings["ExecStart"]
    assert exec_start.startswith(INSTALLED_BIN)
    assert [exec_start.removeprefix(INSTALLED_BIN)] == commands(block.text)     # the command the test runs
    env = environment(settings)
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["PREFECT_HOME"].startswith("/var/lib/okr-sync/")
    docs_api = next(exports(b.text)["PREFECT_API_URL"] for b in command_blocks() if "PREFECT_API_URL" in exports(b.text))
    assert env["PREFECT_API_URL"] == docs_api
    assert settings["User"] == ["okr-sync"] and settings["Restart"] == ["on-failure"]
    assert settings["WantedBy"] == ["multi-user.target"]


def test_the_serve_unit_starts_after_the_server_and_stops_okr_sync_with_sigterm():
    settings = unit("okr-sync-serve.service")
    assert "prefect-server.service" in settings["After"][0] and "prefect-server.service" in settings["Wants"][0]
    # SIGTERM (systemd's default) to okr-sync alone: what the page's test sends to serve (stop_main)
    assert "KillSignal" not in settings and settings["KillMode"] == ["mixed"]
    assert environment(settings)["OKR_SYNC_STORE"].startswith("sqlite:////var/lib/okr-sync/")


def test_systemd_analyze_verifies_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    # with the install paths pointing at this checkout and venv, so the executables exist
    venv_bin = str(Path(sys.executable).parent) + "/"
    for path in UNITS.glob("*.service"):
        text = path.read_text(encoding="utf-8").replace(INSTALLED_BIN, venv_bin).replace("/opt/okr-sync", str(REPO))
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    done = subprocess.run([analyze, "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


# ------------------------------------------------------------------------------- the page, run


def workdir_copy(tmp_path: Path) -> Path:
    """The repository as a fresh clone has it (tracked files; no store, no build output)."""
    work = tmp_path / "okr-sync"
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(
        ".git", "*.db", "__pycache__", "site", ".venv", "*.egg-info", ".pytest_cache", "build"))
    return work


@pytest.fixture
def worker_store(request, tmp_path) -> str:
    """The test's PostgreSQL database for the worker's runs, else a SQLite file."""
    try:
        return request.getfixturevalue("pg_url")
    except pytest.skip.Exception:
        return f"sqlite:///{tmp_path / 'workers.db'}"


def test_operate_page_commands_run_as_written(tmp_path, worker_store):
    work = workdir_copy(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "OKR_SYNC_STORE"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), JIRA_API_TOKEN=FAKE_TOKEN, NO_COLOR="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
               PREFECT_RUNNER_POLL_FREQUENCY="2", PREFECT_WORKER_QUERY_SECONDS="2")
    shells = Shells(work, env, port)
    blocks = command_blocks()
    try:
        for block in blocks:
            if block.kind == "not run":
                continue
            text = block.text.replace(DOCS_PORT, str(port)).replace(DOCS_PG, worker_store)
            if block.kind == "background":
                start(shells, block, text)
            else:
                run(shells, block, text)
        serve_exit = stop_main(shells, "serve")          # as `systemctl stop okr-sync-serve` does
        served = requests.get(f"{shells.api}/deployments/name/sync-okrs/example-scheduled-served", timeout=10).json()
        secret = requests.get(f"{shells.api}/block_types/slug/secret/block_documents/name/jira-token",
                              params={"include_secrets": "true"}, timeout=10).json()
    finally:
        for name in reversed(list(shells.background)):
            stop(shells, name)
    check_what_the_page_promises(shells)
    # stopping serve ends it and pauses its schedules, so no runs pile up as Late
    assert serve_exit == 0, serve_exit
    assert served["paused"] is True
    # the secret block holds the token that was piped in, and no output showed it
    assert secret["data"]["value"] == FAKE_TOKEN
    assert all(FAKE_TOKEN not in out for _, out in shells.outputs) and FAKE_TOKEN not in shells.log("serve")


def run(shells: Shells, block: Block, text: str) -> None:
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=shells.workdir, env=shells.env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"operate.md:{block.line} exited {done.returncode}:\n{text}\n{output[-4000:]}"
    shells.outputs.append((block, output))


def start(shells: Shells, block: Block, text: str) -> None:
    log = shells.workdir.parent / f"{block.name}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(["bash", "-e", "-c", text], cwd=shells.workdir, env=shells.env, stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    shells.background[block.name] = (process, log)
    ready = {
        "prefect-server": lambda: requests.get(f"{shells.api}/health", timeout=2).ok,
        "serve": lambda: requests.get(f"{shells.api}/deployments/name/sync-okrs/example-scheduled-served", timeout=2).ok,
        "worker": lambda: requests.post(f"{shells.api}/work_pools/okr-sync/workers/filter", json={}, timeout=2).json(),
    }[block.name]

    def probe():
        if process.poll() is not None:
            pytest.fail(f"operate.md:{block.line} ({block.name}) exited {process.returncode}:\n{log.read_text()[-4000:]}")
        return ready()
    until(f"operate.md:{block.line} ({block.name}) to be ready", probe, 120, shells)


def stop(shells: Shells, name: str, how: signal.Signals = signal.SIGINT) -> int:
    """A signal to a background block's process group (SIGINT: Ctrl-C); killed if still up after 45 s."""
    process, _ = shells.background[name]
    if process.poll() is None:
        os.killpg(process.pid, how)
        try:
            process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"{name} did not stop on {how.name} within 45 s:\n{shells.log(name)[-2000:]}")
    return process.returncode


def stop_main(shells: Shells, name: str) -> int:
    """SIGTERM to the block's command alone, as systemd stops a service (KillMode=mixed); its exit status
    is the block's, since the command is the shell's last."""
    process, _ = shells.background[name]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) <= 1, children
    os.kill(int(children[0]) if children else process.pid, signal.SIGTERM)   # bash may have exec'd it
    try:
        return process.wait(timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not stop on SIGTERM within 45 s:\n{shells.log(name)[-2000:]}")


def output_of(shells: Shells, needle: str) -> str:
    return next(out for block, out in shells.outputs if needle in block.text)


def check_what_the_page_promises(shells: Shells) -> None:
    validate = output_of(shells, "okr-sync validate")
    assert "OK: 2 objectives, 7 key results" in validate
    assert "sync-okrs/example-scheduled-served" in validate and "*/15 * * * * (Europe/Berlin)" in validate

    # serve says how to start a run from another shell, with this server's URL
    serve_log = shells.log("serve")
    assert f"Serving 1 deployment(s) against {shells.api}" in serve_log
    assert f"export PREFECT_API_URL={shells.api}\n  prefect deployment run sync-okrs/example-scheduled-served" in serve_log
    # the run on demand completed in serve, and wrote okr-sync.db where serve was started
    on_demand = output_of(shells, "prefect deployment run sync-okrs/example-scheduled-served")
    assert "Completed" in on_demand and "checkout-nps" in on_demand and "38" in on_demand
    assert (shells.workdir / "okr-sync.db").exists()
    assert "Stored Prefect Secret block 'jira-token'" in output_of(shells, "okr-sync secret set")

    # prefect.yaml's deployment ran in a process worker and wrote to the workers' store
    assert "sync-okrs/example" in output_of(shells, "prefect deploy --all")
    worker_run = output_of(shells, "prefect deployment run sync-okrs/example ")
    assert "Completed" in worker_run and "self-serve-customers" in worker_run and "38" in worker_run
