"""The workspace: where the store lives and which compute targets exist (``.runctl/config.yaml``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl.config.yamlpos import Located, load_located
from runctl.errors import ConfigError

CONFIG_DIR = ".runctl"
CONFIG_NAME = "config.yaml"
ENV_HOME = "RUNCTL_HOME"
DEFAULT_SNAPSHOT_MAX_MB = 300
DEFAULT_OUTPUTS_MAX_MB = 50 * 1024  # one run's outputs; a job that writes more (or a huge sparse file) is cut

WORKSPACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "store": {"type": "string", "minLength": 1},
        "default_compute_target": {"type": "string", "minLength": 1},
        "default_experiment": {"type": "string", "pattern": r"^[a-zA-Z0-9][a-zA-Z0-9_\-]{0,199}$"},
        "snapshot": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"max_size_mb": {"type": "number", "exclusiveMinimum": 0}},
        },
        "outputs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"max_size_mb": {"type": "number", "exclusiveMinimum": 0}},
        },
        "compute_targets": {
            "type": "object",
            "propertyNames": {"pattern": r"^[a-zA-Z0-9][\w\-]*$"},
            "additionalProperties": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"type": "string", "minLength": 1}},
            },
        },
    },
}


@dataclass
class ComputeTarget:
    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workspace:
    store_dir: Path
    config_path: Path | None = None
    targets: dict[str, ComputeTarget] = field(default_factory=dict)
    default_compute_target: str = "local"
    default_experiment: str | None = None
    snapshot_max_mb: float = DEFAULT_SNAPSHOT_MAX_MB
    outputs_max_mb: float = DEFAULT_OUTPUTS_MAX_MB  # what one run's outputs, artifacts and logs may bring into the store
    located: Located | None = None


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "runctl" / CONFIG_NAME


def default_store_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "runctl"


def find_config(start: Path | None = None, *more: Path) -> Path | None:
    """The nearest .runctl/config.yaml from ``start`` up (the job file's folder, for a job),
    then from each of ``more`` (the current directory), then the user's config."""
    for begin in (start or Path.cwd(), *more):
        here = begin.resolve()
        for d in (here, *here.parents):
            candidate = d / CONFIG_DIR / CONFIG_NAME
            if candidate.is_file():
                return candidate
    user = user_config_path()
    return user if user.is_file() else None


def load_workspace(start: Path | None = None, config_path: Path | None = None, *more: Path) -> Workspace:
    path = config_path or find_config(start, *more)
    ws = Workspace(store_dir=default_store_dir())
    ws.targets["local"] = ComputeTarget("local", "local")
    if path is not None:
        _apply_config(ws, path)
    if os.environ.get(ENV_HOME):
        ws.store_dir = Path(os.environ[ENV_HOME]).expanduser().resolve()
    return ws


def checked_options(ws: Workspace, name: str, options_schema: dict[str, Any]) -> dict[str, Any]:
    """Target ``name``'s options, validated against its backend's ``options_schema`` (errors at
    file:line:col with did-you-mean) and with cpus/memory/gpus parsed. Checked when the target
    is used, so a target whose backend is not installed here does not stop other commands."""
    from runctl.config.resources import parse
    from runctl.config.schemacheck import validate
    from runctl.errors import InputError

    target = ws.targets[name]
    located = ws.located or Located({"compute_targets": {name: {"type": target.type, **target.options}}},
                                    str(ws.config_path or "workspace config"), {}, {})
    schema = {"type": "object", "properties": {"compute_targets": {"type": "object", "properties": {name: {
        "type": "object", "required": ["type"], "additionalProperties": False,
        "properties": {"type": {"type": "string"}, **options_schema}}}}}}
    validate(located, schema)
    try:
        return {**target.options, **parse(target.options)}
    except InputError as e:
        raise located.error(("compute_targets", name, getattr(e, "field", "")), str(e)) from None


def _apply_config(ws: Workspace, path: Path) -> None:
    from runctl.config.schemacheck import validate

    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read workspace config: {e.strerror}", file=str(path)) from None
    located = load_located(text, str(path))
    if not isinstance(located.data, dict):
        raise located.error((), "the workspace config must be a mapping", "see the README's Configuration section")
    validate(located, WORKSPACE_SCHEMA)
    data = located.data
    ws.config_path = path
    ws.located = located
    if "store" in data:
        store = Path(os.path.expanduser(data["store"]))
        ws.store_dir = (store if store.is_absolute() else path.parent.parent / store).resolve()
    for name, spec in (data.get("compute_targets") or {}).items():
        opts = {k: v for k, v in spec.items() if k != "type"}
        ws.targets[name] = ComputeTarget(name, spec["type"], opts)
    ws.default_compute_target = data.get("default_compute_target", "local")
    ws.default_experiment = data.get("default_experiment")
    if ws.default_experiment is not None and not ws.default_experiment.isprintable():
        raise located.error(("default_experiment",), f"{ws.default_experiment!r} contains a control character",
                            "remove it")
    ws.snapshot_max_mb = float((data.get("snapshot") or {}).get("max_size_mb", DEFAULT_SNAPSHOT_MAX_MB))
    ws.outputs_max_mb = float((data.get("outputs") or {}).get("max_size_mb", DEFAULT_OUTPUTS_MAX_MB))
