"""The layers import only downwards: core (okrsync) -> connectors -> flows -> CLI (okrsync.cli).

Read from the source with `ast`, so a new upward import or cycle fails here, whether it sits at
the top of a module or inside a function.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLE, REPO

PACKAGES = ("okrsync", "connectors", "flows")
LAYER = {"okrsync": 0, "connectors": 1, "flows": 2, "okrsync.cli": 3}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module named by an import statement anywhere in the file (relative ones resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0] if "." in module else module
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> int | None:
    if module == "okrsync.cli" or module.startswith("okrsync.cli."):
        return LAYER["okrsync.cli"]
    top = module.split(".")[0]
    return LAYER.get(top)


def test_no_module_imports_a_layer_above_it():
    upward = []
    for module, path in _modules().items():
        own = _layer(module)
        for imported in _imports(path, module):
            theirs = _layer(imported)
            if theirs is not None and own is not None and theirs > own:
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_nothing_imports_prefect_server_internals():
    found = [f"{m} imports {i}" for m, p in _modules().items() for i in _imports(p, m)
             if i == "prefect.server" or i.startswith("prefect.server.")]
    assert found == []


def test_only_the_flows_and_the_cli_import_prefect_at_module_level():
    """The core and the connectors run without Prefect (a local run never loads it); only
    `{secret: NAME}` reaches for Prefect's Secret block, inside the function that reads it."""
    offenders = []
    for module, path in _modules().items():
        if module.startswith("flows") or module == "okrsync.cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{module}: {n}" for n in names if n == "prefect" or n.startswith("prefect.")]
    assert offenders == []


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {m: {i for i in _imports(p, m) if i in modules and i != m} for m, p in modules.items()}
    # package __init__ files re-exporting their own modules are not cycles of substance
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_a_local_run_never_loads_prefect(tmp_path):
    code = ("import sys\nfrom okrsync.cli import app\n"
            f"try:\n    app(['run', {str(EXAMPLE)!r}, '--dry-run', '--no-prefect'])\n"
            "except SystemExit as done:\n    code = done.code\n"
            "print('exit', code, 'prefect loaded:', any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules))\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert "exit 0 prefect loaded: False" in done.stdout, done.stdout + done.stderr[-2000:]


def test_tenacity_is_imported_in_one_module_only():
    """Every HTTP connector retries through connectors/_http.py: one policy, one status map."""
    users = sorted(m for m, p in _modules().items() if any(i == "tenacity" or i.startswith("tenacity.")
                                                            for i in _imports(p, m)))
    assert users == ["connectors._http"]
