"""Resources (``cpus``, ``memory``, ``gpus``), parsed once, in core, into plain values.

``memory`` takes the units people write: a number of bytes, or a number with k, m, g, t
(optionally followed by i and/or b, any case): ``512m``, ``4g``, ``2T``, ``1.5GiB``,
``4gb``. Every unit is binary (as Docker's and Slurm's are): ``4g`` is 4 GiB. ``gpus`` is a
count, ``all``, or a list of device ids. The job's ``resources`` and a target's
``cpus``/``memory``/``gpus`` options go through the same parser.
"""

from __future__ import annotations

import re
from typing import Any

from runctl.errors import InputError

MEMORY_FORMS = "a number of bytes, or a number with a unit: 512m, 4g, 2T, 1.5GiB (binary units)"
_MEMORY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_memory(value: Any) -> int:
    """Bytes; raises InputError (naming the accepted forms) for anything else."""
    if isinstance(value, bool):
        raise InputError(f"{value!r} is not a memory size; use {MEMORY_FORMS}")
    if isinstance(value, int):
        if value < 1:
            raise InputError(f"{value} is not a memory size; use {MEMORY_FORMS}")
        return value
    m = _MEMORY.match(str(value))
    if m is None or (m.group(3) and not m.group(2)):
        raise InputError(f"{str(value)!r} is not a memory size; use {MEMORY_FORMS}")
    size = int(float(m.group(1)) * 1024 ** _POWER[m.group(2).lower()])
    if size < 1:
        raise InputError(f"{str(value)!r} is less than one byte; use {MEMORY_FORMS}")
    return size


def parse_gpus(value: Any) -> int | str | list[str]:
    if value is None or value is False:
        return 0
    if value == "all":
        return "all"
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InputError(f"{value!r} is not a GPU request; use a count, all, or a list of device ids")


def parse_cpus(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise InputError(f"{value!r} is not a CPU count; use a positive number (e.g. 2 or 0.5)")


_PARSERS = {"cpus": parse_cpus, "memory": parse_memory, "gpus": parse_gpus}


def parse(values: dict[str, Any]) -> dict[str, Any]:
    """{cpus: float, memory: bytes, gpus: count | "all" | [ids]} for the keys present.
    A problem raises InputError whose ``field`` attribute names the key."""
    out: dict[str, Any] = {}
    for key, parser in _PARSERS.items():
        if key in values and values[key] is not None:
            try:
                out[key] = parser(values[key])
            except InputError as e:
                e.field = key  # type: ignore[attr-defined]
                raise
    return out
