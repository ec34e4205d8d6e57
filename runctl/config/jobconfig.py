"""Loading a job file (YAML ScriptRunConfig): schema validation, ``--set`` overrides, path checks."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runctl.config.hyperdrive import Tuning
from runctl.config.schemacheck import load_schema, validate
from runctl.config.v1config import convert, is_v1
from runctl.config.workspace import Workspace
from runctl.config.yamlpos import Located, load_located, load_value
from runctl.errors import ConfigError

SCHEMA_FILE = "runconfig.schema.json"
DEFAULT_MAX_RUN_DURATION_S = 2592000
DEFAULT_SYSTEM_METRICS_INTERVAL_S = 10.0  # (runctl.job.sysmetrics.DEFAULT_INTERVAL_S)


@dataclass(frozen=True)
class JobConfig:
    """A validated job. Field names are the schema's top-level properties."""

    source_directory: Path
    script: str | None = None
    command: str | list[str] | None = None
    arguments: list[str] = field(default_factory=list)
    compute_target: str = "local"
    environment: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    max_run_duration_seconds: int = DEFAULT_MAX_RUN_DURATION_S
    system_metrics_interval_s: float = DEFAULT_SYSTEM_METRICS_INTERVAL_S
    node_count: int = 1
    distributed_job_config: dict[str, Any] | None = None
    experiment: str = "default"
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    hyperdrive: Tuning | None = None  # (runctl/config/hyperdrive.py) a tuning sweep of the script's arguments
    # Not schema fields: where it came from, and the validated document as written.
    job_file: Path | None = None
    document: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # (a v1 run configuration) what was not carried over, and why

    @property
    def environment_variables(self) -> dict[str, str]:
        return {k: _text(v) for k, v in (self.environment.get("environment_variables") or {}).items()}


NON_SCHEMA_FIELDS = ("job_file", "document", "notes")


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


OPTION_FOR: dict[tuple[str, ...], str] = {("compute_target",): "--compute {}"}  # CLI options that are --set KEY=VALUE underneath


def parse_set(expr: str) -> tuple[tuple[str, ...], Any]:
    if "=" not in expr:
        raise ConfigError("expected KEY.PATH=VALUE", file=f"--set {expr}", hint="e.g. --set resources.cpus=4")
    key, _, raw = expr.partition("=")
    parts = tuple(p for p in key.strip().split("."))
    if not all(parts):
        raise ConfigError("empty key in the path", file=f"--set {expr}", hint="e.g. --set environment.docker.image=python:3.11")
    try:
        value = load_value(raw, parts, f"--set {expr}") if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_sets(located: Located, sets: list[str]) -> None:
    for expr in sets:
        path, value = parse_set(expr)
        node = located.data
        for i, p in enumerate(path[:-1]):
            nxt = node.get(p) if isinstance(node, dict) else None
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{'.'.join(path[: i + 1])} is not a mapping", file=f"--set {expr}",
                                  hint="set the whole value instead")
            node = nxt
        node[path[-1]] = value
        # (an option that stands for a --set names itself: --compute docker, not --set compute_target=docker)
        located.overrides[path] = OPTION_FOR.get(path, "--set {}").format(expr.partition("=")[2] if path in OPTION_FOR
                                                                          else expr)


def load_job(path: str | Path, workspace: Workspace, sets: list[str] | None = None) -> JobConfig:
    """Read and check a job file; any problem is a ConfigError naming file:line:col and field."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("job file not found", file=shown, hint="check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read job file: {e}", file=shown) from None
    located = load_located(text, shown)
    notes: list[str] = []
    if is_v1(path, located.data):  # an Azure ML v1 run configuration, as it is
        doc, notes, _ = convert(path)
        located = Located(doc, f"{shown} (converted from v1)", {}, {})
    if not isinstance(located.data, dict):
        raise located.error((), "a job file must be a mapping of fields", "start from examples/hello/job.yaml")
    apply_sets(located, sets or [])
    validate(located, load_schema(SCHEMA_FILE))
    check_text(located)
    job = _build(located, path.resolve().parent, workspace, path.resolve())
    return dataclasses.replace(job, notes=tuple(notes)) if notes else job


def job_from_mapping(doc: dict[str, Any], workspace: Workspace, origin: str, base_dir: Path) -> JobConfig:
    """Check a job given as a mapping (the Python API's ScriptRunConfig) exactly as a job file."""
    located = Located(doc, origin, {}, {})
    validate(located, load_schema(SCHEMA_FILE))
    check_text(located)
    return _build(located, base_dir, workspace, None)


NAME_FIELDS = (("experiment",), ("display_name",), ("compute_target",), ("tags",))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(located: Located) -> None:
    """Strings that validate yet cannot work: a NUL byte anywhere (no argv, variable or path
    can hold one), and control characters (a trailing newline...) in names that become
    folder names, run ids or terminal output."""

    def walk(value: Any, path: tuple) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, path + (k,))
                walk(v, path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, path + (i,))
        elif isinstance(value, str):
            if "\x00" in value:
                raise located.error(path, "contains a NUL byte", "remove it: no argument, variable or path can hold one")
            if path[:1] in NAME_FIELDS and len(path) <= 2 and _CONTROL.search(value):
                raise located.error(path, f"{value!r} contains a control character (e.g. a newline)", "remove it")

    walk(located.data, ())


def _build(located: Located, base_dir: Path, ws: Workspace, job_file: Path | None) -> JobConfig:
    d = located.data
    src = Path(d.get("source_directory", "."))
    src = (src if src.is_absolute() else base_dir / src).resolve()
    if not src.is_dir():
        raise located.error(("source_directory",), f"directory {str(src)!r} does not exist",
                            "give a directory relative to the job file")
    script = d.get("script")
    if script is not None:
        _check_script(located, src, script)
    target = d.get("compute_target", ws.default_compute_target)
    if target not in ws.targets:
        known = sorted(ws.targets)
        close = difflib.get_close_matches(target, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else (
            f"known targets: {', '.join(known)}; add it under compute_targets in "
            f"{ws.config_path or '.runctl/config.yaml'}")
        if "compute_target" in d:
            raise located.error(("compute_target",), f"unknown compute target {target!r}", hint)
        raise ConfigError(f"unknown default compute target {target!r}", file=str(ws.config_path),
                          field="default_compute_target", hint=hint)
    experiment = d.get("experiment") or ws.default_experiment or _experiment_from_dir(base_dir)
    _parsed_resources(located)
    _parsed_tuning(located)
    return _job(d, src, target, experiment, job_file)


def _parsed_resources(located: Located) -> dict[str, Any]:
    from runctl.config.resources import parse
    from runctl.errors import InputError

    try:
        return parse(located.data.get("resources") or {})
    except InputError as e:
        raise located.error(("resources", getattr(e, "field", "")), str(e)) from None


def _parsed_tuning(located: Located) -> Tuning | None:
    from runctl.config import hyperdrive
    from runctl.errors import InputError

    if located.data.get("hyperdrive") is None:
        return None
    try:
        return hyperdrive.parse(located.data["hyperdrive"])
    except InputError as e:
        field = tuple(getattr(e, "field", ()))
        message = str(e).split(": ", 1)[1] if str(e).startswith("hyperdrive") and ": " in str(e) else str(e)
        raise located.error(("hyperdrive", *field), message) from None


def _job(d: dict[str, Any], src: Path, target: str, experiment: str, job_file: Path | None) -> JobConfig:
    command = d.get("command")
    return JobConfig(
        source_directory=src,
        script=d.get("script"),
        command=[_text(c) for c in command] if isinstance(command, list) else command,
        arguments=[_text(a) for a in d.get("arguments", [])],
        compute_target=target,
        environment=d.get("environment") or {},
        resources=_resources(d.get("resources") or {}),
        max_run_duration_seconds=d.get("max_run_duration_seconds", DEFAULT_MAX_RUN_DURATION_S),
        system_metrics_interval_s=d.get("system_metrics_interval_s", DEFAULT_SYSTEM_METRICS_INTERVAL_S),
        node_count=d.get("node_count", 1),
        distributed_job_config=d.get("distributed_job_config"),
        experiment=experiment,
        display_name=d.get("display_name"),
        description=d.get("description"),
        tags={k: _text(v) for k, v in (d.get("tags") or {}).items()},
        hyperdrive=_tuning(d.get("hyperdrive")),
        job_file=job_file,
        document=d,
    )


def _tuning(doc: Any) -> Tuning | None:
    from runctl.config import hyperdrive

    return None if doc is None else hyperdrive.parse(doc)


def _resources(values: dict[str, Any]) -> dict[str, Any]:
    from runctl.config.resources import parse

    return parse(values)


def _check_script(located: Located, src: Path, script: str) -> None:
    p = Path(script)
    if p.is_absolute() or ".." in p.parts:
        raise located.error(("script",), f"{script!r} points outside source_directory",
                            "give the script's path relative to source_directory")
    full = src / p
    if not full.is_file():
        raise located.error(("script",), f"{script!r} not found in {str(src)!r}",
                            "give the script's path relative to source_directory")
    try:
        full.resolve().relative_to(src)
    except ValueError:
        raise located.error(("script",), f"{script!r} resolves outside source_directory",
                            "do not point the script at a symlink that leaves the source directory") from None


def _experiment_from_dir(d: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", d.name).lstrip("_-")[:200]
    return name or "default"


def job_from_document(doc: dict[str, Any], workspace: Workspace, compute: str | None = None) -> JobConfig:
    """Rebuild a stored job (for rerun): the schema still applies; the source tree need not exist."""
    doc = dict(doc)
    if compute is not None:
        doc["compute_target"] = compute
    located = Located(doc, "stored job", {}, {})
    validate(located, load_schema(SCHEMA_FILE))
    if doc.get("compute_target", "local") not in workspace.targets:
        raise ConfigError(f"unknown compute target {doc['compute_target']!r}", field="compute_target",
                          hint=f"known targets: {', '.join(sorted(workspace.targets))}")
    return _job(doc, Path(doc["source_directory"]), doc.get("compute_target", "local"),
                doc.get("experiment", "default"), None)
