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
ENV_STORE = "RUNCTL_STORE"  # a team store's URL (postgresql://...), or a store folder
ENV_ARTIFACTS = "RUNCTL_ARTIFACTS"  # a team store's shared artifacts folder
DEFAULT_SNAPSHOT_MAX_MB = 300
DEFAULT_OUTPUTS_MAX_MB = 50 * 1024  # one run's outputs; a job that writes more (or a huge sparse file) is cut

WORKSPACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "store": {"type": "string", "minLength": 1},
        "artifacts": {"type": "string", "minLength": 1},
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
    store_dir: Path  # this machine's store (with a team store: this machine's own state beside it)
    config_path: Path | None = None
    store_url: str | None = None  # a team store: postgresql://host:port/db (no password in it)
    artifacts: str | None = None  # a team store's shared folder for snapshots, logs and outputs
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
    if os.environ.get(ENV_STORE):
        _set_store(ws, os.environ[ENV_STORE], Path.cwd(), ENV_STORE)
    if os.environ.get(ENV_ARTIFACTS):
        ws.artifacts = os.path.expanduser(os.environ[ENV_ARTIFACTS])
    return ws


def _set_store(ws: Workspace, value: str, base: Path, where: str, located: Located | None = None) -> None:
    """``store:``: a folder (this machine's store) or a team store's URL."""
    if "://" not in value:
        store = Path(os.path.expanduser(value))
        ws.store_dir = (store if store.is_absolute() else base / store).resolve()
        return
    problem = store_url_problem(value)
    if problem:
        if located is not None:
            raise located.error(("store",), problem[0], problem[1])
        raise ConfigError(problem[0], file=where, hint=problem[1])
    ws.store_url = value


def store_url_problem(url: str) -> tuple[str, str] | None:
    """(what is wrong, what to do) with a team store's URL, or None."""
    from urllib.parse import parse_qs, urlsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError as e:
        return f"{url!r} is not a URL ({e})", "write postgresql://HOST:PORT/DATABASE"
    if parts.scheme not in ("postgresql", "postgres"):
        return (f"store {parts.scheme}://...: a team store is PostgreSQL (postgresql://HOST:PORT/DATABASE)",
                "or give a folder for a store on this machine")
    if password is not None or "password" in parse_qs(parts.query):
        return ("the store URL holds a password, which runctl refuses to read from a URL or a config file",
                "remove it and put it in libpq's password file (~/.pgpass, or the file PGPASSFILE names), "
                "a service file, or PGPASSWORD")
    return None


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
        _set_store(ws, data["store"], path.parent.parent, str(path), located)
    if "artifacts" in data:
        raw = data["artifacts"]
        art = Path(os.path.expanduser(raw))
        ws.artifacts = raw if "://" in raw else str(art if art.is_absolute() else (path.parent.parent / art).resolve())
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
