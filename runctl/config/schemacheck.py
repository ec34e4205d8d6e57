"""JSON Schema validation that reports every problem of a file as ConfigErrors at their places, in line order."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from runctl.config.yamlpos import Located
from runctl.errors import ConfigError


@cache
def load_schema(name: str) -> dict:
    return json.loads((Path(__file__).parent.parent / name).read_text())  # (importlib.resources: 2.5 ms more)


def validate(located: Located, schema: dict) -> None:
    """Raise the first problem as a ConfigError. Documents already found valid against the
    same schema are remembered by content hash, which spares importing jsonschema (~35 ms)
    on every repeated submit (cron, reruns)."""
    marker = _valid_marker(located.data, schema)
    if marker is not None and marker.exists():
        return
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(located.data), key=_rank)
    if errors:
        # every problem at once, in line order (one per place: the likeliest cause first)
        found: dict[tuple, ConfigError] = {}
        typos = {tuple(err.absolute_path) for err in errors if err.validator == "additionalProperties"}
        for err in errors:
            if err.validator in ("required", "oneOf", "anyOf", "not", "dependentSchemas") \
                    and tuple(err.absolute_path) in typos:
                continue  # a field missing there is most likely the misspelled one already reported
            for e in _config_errors(err, located, schema):
                found.setdefault((e.file, e.line, e.col, e.field), e)
        ordered = sorted(found.values(), key=lambda e: (e.line or 0, e.col or 0))
        raise ordered[0].with_more(ordered[1:])
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a cache that cannot be written only costs time


def _valid_marker(data: Any, schema: dict) -> Path | None:
    try:
        blob = json.dumps([schema, data], sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError):  # dates and other YAML types: validate every time
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "runctl" / "valid" / hashlib.sha256(blob).hexdigest()


def _rank(err: Any) -> tuple:
    # Unknown keys first (the likeliest typo), then deepest path, then file order.
    return (err.validator != "additionalProperties", -len(err.absolute_path), list(map(str, err.absolute_path)))


def _subschema(schema: dict, path: tuple) -> dict:
    node = schema
    for p in path:
        if isinstance(p, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(p, {})
    return node


def _config_errors(err: Any, located: Located, schema: dict) -> list[ConfigError]:
    """One ConfigError per place (an unknown-fields error names each unknown field)."""
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties":
        known = sorted(_subschema(schema, path).get("properties", {}))
        return [located.error(path + (key,), "unknown field", _unknown_field_hint(str(key), known), key=True)
                for key in err.instance if key not in known]
    return [_to_config_error(err, located, schema)]


def _to_config_error(err: Any, located: Located, schema: dict) -> ConfigError:
    path = tuple(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        return _config_errors(err, located, schema)[0]
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        described = _subschema(schema, path).get("description")
        return located.error(path, f"expected {want}, got {_describe(err.instance)}",
                             f"fix the value's type ({described})" if described else "fix the value's type")
    if v == "enum":
        opts = ", ".join(map(str, err.validator_value))
        close = difflib.get_close_matches(str(err.instance), [str(o) for o in err.validator_value], n=1)
        hint = f"did you mean {close[0]!r}?" if close else "use one of the listed values"
        return located.error(path, f"{err.instance!r} is not one of: {opts}", hint)
    if v == "required":
        missing = err.message.split("'")[1]
        return located.error(path, f"missing required field {missing!r}", f"add {missing}: ...")
    if v == "oneOf" and not path and {"script", "command"} <= set(_mentions(err.validator_value)):
        both = "script" in err.instance and "command" in err.instance
        if both:
            return located.error(("command",), "both script and command are set", "keep one of them", key=True)
        return located.error((), "neither script nor command is set", "add script: train.py (or command: ...)")
    if v in ("not", "dependentSchemas") and not path:
        return located.error(("command",), "command cannot be combined with script or arguments",
                             "put the arguments into the command, or use script + arguments", key=True)
    if v == "oneOf":
        return located.error(path, f"{_describe(err.instance)} is not a valid value", _describe_options(err.validator_value))
    if v == "pattern":
        return located.error(path, f"{err.instance!r} has the wrong format (must match {err.validator_value})",
                             "fix the value")
    if v in ("minimum", "exclusiveMinimum", "maximum", "minLength", "maxLength", "minItems", "maxProperties"):
        return located.error(path, err.message, "fix the value")
    return located.error(path, err.message, "see runconfig.schema.json")


# Azure ML v1's names (RunConfiguration, ScriptRunConfig, .runconfig camelCase) -> runctl's.
V1_NAMES = {
    "target": "compute_target", "compute": "compute_target", "run_config": "the fields themselves (script, "
    "arguments, compute_target, environment, ...)", "runconfig": "the fields themselves", "script_params": "arguments",
    "maxRunDurationSeconds": "max_run_duration_seconds", "nodeCount": "node_count",
    "sourceDirectory": "source_directory", "environmentVariables": "environment_variables",
    "environment_variables": "environment.environment_variables", "framework": "nothing (runctl runs the script "
    "as it is; drop it)", "communicator": "distributed_job_config (type: mpi, pytorch or tensorflow)",
    "distributed_config": "distributed_job_config", "interpreterPath": "interpreter_path",
    "userManagedDependencies": "user_managed_dependencies", "baseImage": "base_image", "shmSize": "shm_size",
    "docker_image": "environment.docker.image", "use_docker": "a docker compute target",
}


def _unknown_field_hint(key: str, known: list[str]) -> str:
    """What the user meant: a v1 name's runctl name, a camelCase name's snake_case one, or
    the closest known field."""
    if key in V1_NAMES:
        return f"that is Azure ML v1's name; runctl's is {V1_NAMES[key]}"
    import re

    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
    if snake != key and snake in known:
        return f"did you mean {snake!r}? (runctl's fields are snake_case)"
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"


def _mentions(options: list) -> list:
    out = []
    for o in options:
        out.extend(o.get("required", []))
    return out


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}" if not isinstance(value, (dict, list)) else kind[type(value)]


def _describe_options(options: list) -> str:
    parts: list[str] = []
    for o in options:
        if "enum" in o:
            parts.extend(repr(e) for e in o["enum"])
        elif "type" in o:
            t = o["type"]
            parts.append(" or ".join(t) if isinstance(t, list) else t)
    return "use " + " or ".join(parts) if parts else "see runconfig.schema.json"
