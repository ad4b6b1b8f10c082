"""Field types for connector configs: paths relative to the config file, and secret references.

- `ConfigPath`: a path in the YAML, resolved against the directory of the config file that
  holds it (pass `context={"base_dir": Path}` to model_validate).
- `InsidePath`: a ConfigPath that, written relative, must stay inside the config file's folder
  tree once `..` and symlinks are followed; an absolute path is the admin's explicit choice.
- `no_boolean`: a before-validator for numbers: YAML's true/false are not 1 and 0.
- `SecretRef`: `"${NAME}"` (an environment variable) or `{secret: NAME}` (a Prefect Secret
  block). A plain-text value is rejected, so no token ever sits in a config file.
  `.reveal()` reads the value at run time; `.describe()` names where it comes from, for
  error messages (never the value).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, ValidationInfo, model_validator

from okrsync.errors import SourceError
from okrsync.redact import register

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def no_boolean(value: Any) -> Any:
    """YAML's true/false (yes/no, on/off) are not numbers, though pydantic would read them as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number: write the number, e.g. 45 (unquoted yes, no, on and "
                         "off are true/false in YAML)")
    return value


def _written_path(value: Any) -> Path:
    """The path as written in the YAML (`~` expanded), or ValueError saying how to write one."""
    if not isinstance(value, (str, Path)):
        raise ValueError("must be written as text, e.g. data/survey.csv")
    text = str(value)
    if not text.strip():
        raise ValueError("is empty: write where the file is, e.g. data/survey.csv")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("holds a control character (a tab, a line break or \\0): write it as plain text")
    return Path(os.path.expanduser(text))


def _resolve_path(value: Any, info: ValidationInfo) -> Path:
    path = _written_path(value)
    base = (info.context or {}).get("base_dir")
    return Path(base) / path if not path.is_absolute() and base is not None else path


def _resolve_inside(value: Any, info: ValidationInfo) -> Path:
    path = _written_path(value)
    base = (info.context or {}).get("base_dir")
    if path.is_absolute() or base is None:
        return path
    folder = Path(base).resolve()
    try:
        target = (folder / path).resolve()
    except (OSError, RuntimeError):       # a symlink loop, or a name the system refuses
        raise ValueError(f"{path} cannot be followed to a file (a symlink loop?): check `path:`") from None
    if not target.is_relative_to(folder):
        raise ValueError(f"{path} leads outside the config file's folder ({folder}): move the file into that "
                         "folder, or write its absolute path if it is meant to be read from elsewhere")
    return Path(base) / path


ConfigPath = Annotated[Path, BeforeValidator(_resolve_path)]
InsidePath = Annotated[Path, BeforeValidator(_resolve_inside)]


class SecretRef(BaseModel):
    """Where a secret lives: an environment variable or a Prefect Secret block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    secret: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _ENV_REF.match(value.strip())
            if not match and value.strip().startswith("${"):
                raise ValueError('this is not an environment variable reference: a variable name holds only letters, '
                                 'digits and _, not starting with a digit, e.g. "${JIRA_TOKEN}"')
            if not match:
                raise ValueError(
                    "plain-text secrets are not allowed in the config: put the value in an "
                    "environment variable and write \"${VARIABLE}\", or store it as a Prefect "
                    "Secret block and write {secret: NAME}"
                )
            return {"env": match.group(1)}
        if isinstance(value, dict) and set(value) == {"secret"}:
            return {"secret": value["secret"]}
        if isinstance(value, dict) and set(value) <= {"env", "secret"}:
            return value
        raise ValueError('write "${VARIABLE}" or {secret: NAME}')

    @model_validator(mode="after")
    def _one_of(self) -> "SecretRef":
        if bool(self.env) == bool(self.secret):
            raise ValueError('write "${VARIABLE}" or {secret: NAME}, exactly one')
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        """What an admin writes, not the internal shape: "${VAR}" or {secret: NAME}."""
        return {"anyOf": [
            {"type": "string", "pattern": _ENV_REF.pattern, "description": "an environment variable: \"${NAME}\""},
            {"type": "object", "properties": {"secret": {"type": "string", "description": "a Prefect Secret block"}},
             "required": ["secret"], "additionalProperties": False},
        ]}

    def describe(self) -> str:
        """Where the secret comes from, fit for an error message (never the value)."""
        return f"environment variable {self.env}" if self.env else f"Prefect Secret block '{self.secret}'"

    def reveal(self) -> SecretStr:
        """Read the secret now. Raises SourceError naming the variable/block if it is missing."""
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise SourceError(f"environment variable {self.env} is not set: export it before running")
            register(value)
            return SecretStr(value)
        try:
            from prefect.blocks.system import Secret

            value = Secret.load(self.secret).get()
        except Exception:  # noqa: BLE001 - Prefect raises ValueError/ObjectNotFound etc.
            raise SourceError(
                f"Prefect Secret block '{self.secret}' could not be read: create it with "
                f"`okr-sync secret set {self.secret}` or in the Prefect UI"
            ) from None
        # a Secret block may hold JSON (e.g. a service-account key): hand it on as JSON text
        text = value if isinstance(value, str) else json.dumps(value)
        register(text)
        return SecretStr(text)
