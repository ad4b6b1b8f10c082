"""Whether a Prefect API is configured, read the way Prefect reads it but without importing Prefect
(importing it costs about a second; a local run should not).

Looked at in Prefect's order of precedence: the environment (PREFECT_API_URL), a `.env` file in
the working directory, `prefect.toml` and `pyproject.toml` `[tool.prefect]` in the working
directory, then the active profile (PREFECT_PROFILE, else `active` in the profiles file, merged
over Prefect's built-in profiles, so `prefect profile use local` counts).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

API_URL = "PREFECT_API_URL"


def _toml(path: Path) -> dict[str, Any]:
    if tomllib is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _dotenv(path: Path) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.strip().removeprefix("export ").partition("=")
        if key.strip() == API_URL:
            return value.strip().strip("'\"") or None
    return None


def _profiles() -> tuple[str, dict[str, dict[str, Any]]]:
    """The active profile's name and every profile (Prefect's defaults, then the user's)."""
    profiles: dict[str, dict[str, Any]] = {}
    active = "ephemeral"
    spec = importlib.util.find_spec("prefect")
    if spec is not None and spec.origin:
        defaults = _toml(Path(spec.origin).parent / "settings" / "profiles.toml")
        active = defaults.get("active", active)
        profiles.update(defaults.get("profiles", {}))
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    user = _toml(Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser())
    active = user.get("active", active)
    for name, settings in (user.get("profiles") or {}).items():
        profiles.setdefault(name, {}).update(settings or {})
    return os.environ.get("PREFECT_PROFILE") or active, profiles


def prefect_api_url() -> str | None:
    """The Prefect API URL runs would report to, or None (Prefect would start a temporary server)."""
    if API_URL in os.environ:
        return os.environ[API_URL] or None
    cwd = Path.cwd()
    if url := _dotenv(cwd / ".env"):
        return url
    for table in (_toml(cwd / "prefect.toml"), _toml(cwd / "pyproject.toml").get("tool", {}).get("prefect", {})):
        url = (table.get("api") or {}).get("url") if isinstance(table.get("api"), dict) else None
        if url:
            return str(url)
    active, profiles = _profiles()
    return (profiles.get(active) or {}).get(API_URL) or None
