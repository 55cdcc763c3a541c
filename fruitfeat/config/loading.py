"""Reading a YAML config: ``--set`` overrides, a refusal of anything that looks like a credential,
and validation errors that name the file, the field and the reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fruitfeat.config.sections import JobConfig
from fruitfeat.errors import ConfigError

#: Keys that hold secrets: credentials come from the environment or the instance profile, never a file.
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|access[._-]?key|session[._-]?key)", re.I)
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def find_credentials(node: Any, where: str = "") -> list[str]:
    """Dotted names of config entries that look like credentials (the values are never echoed)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{where}.{key}" if where else str(key)
            if _SECRET_KEY.search(str(key)) and value not in (None, ""):
                found.append(name)
            else:
                found.extend(find_credentials(value, name))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(find_credentials(value, f"{where}[{i}]"))
    elif isinstance(node, str) and _AWS_KEY_ID.search(node):
        found.append(where)
    return found


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` strings; values are parsed as YAML scalars so '8' is an int."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        *sections, name = key.strip().split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {section!r} is not a section")
        node[name] = yaml.safe_load(raw) if raw.strip() else ""
    return data


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in error.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(top level)"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling; see README 'Configuration')"
        lines.append(f"  {field}: {reason}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> JobConfig:
    secrets = find_credentials(data)
    if secrets:
        raise ConfigError(
            f"invalid configuration in {source}:\n  {', '.join(secrets)}: looks like a credential; "
            "credentials come from the environment or the instance profile, never from config files"
        )
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> JobConfig:
    """Read a YAML file, apply ``--set`` overrides, validate the result as one unit."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    # Name the overridden keys, never their values: a value given on the command line may be a secret.
    keys = [item.partition("=")[0] for item in overrides or []]
    source = str(path) + (f" (with --set {', '.join(keys)})" if keys else "")
    return config_from_dict(apply_overrides(data, list(overrides or [])), source)
