"""Turns logged events into the dict Azure ML's ``run.get_metrics()`` returns (stdlib only).

A metric logged once is the bare value, logged N>1 times a list in logging order;
rows and tables become a dict of columns (bare values when there is one row).
"""

from __future__ import annotations

from typing import Iterable

TABLE_KINDS = ("row", "table")


def shape_metrics(events: Iterable[tuple]) -> dict:
    """``events`` are (kind, name, value) in logging order."""
    vectors: dict = {}
    tables: dict = {}
    rows: dict = {}
    artifacts: dict = {}
    order: list = []
    for kind, name, value in events:
        if name not in vectors and name not in tables and name not in artifacts:
            order.append(name)
        if kind == "scalar":
            vectors.setdefault(name, []).append(value)
        elif kind == "list" and type(value) is list:
            vectors.setdefault(name, []).extend(value)
        elif kind in TABLE_KINDS and _columns(kind, value):
            cols = tables.setdefault(name, {})
            n_before = rows.get(name, 0)
            if kind == "row":
                add = 1
                value = {k: [v] for k, v in value.items()}
            else:
                add = max((len(v) for v in value.values()), default=0)
            for col, vals in value.items():
                cols.setdefault(col, [None] * n_before).extend(vals)
            for vals in cols.values():
                if len(vals) < n_before + add:
                    vals.extend([None] * (n_before + add - len(vals)))
            rows[name] = n_before + add
        else:
            artifacts.setdefault(name, []).append(value)
    out: dict = {}
    for name in order:
        if name in out:
            continue
        if name in vectors:
            vals = vectors[name]
            out[name] = vals[0] if len(vals) == 1 else vals
        elif name in tables:
            cols = tables[name]
            out[name] = {k: v[0] for k, v in cols.items()} if rows[name] == 1 else cols
        else:
            vals = artifacts[name]
            out[name] = vals[0] if len(vals) == 1 else vals
    return out


def _columns(kind: str, value: object) -> bool:
    """Is ``value`` a row (dict of scalars) or a table (dict of lists)? Events come from a file
    a job could write anything into: a malformed one is kept as a plain value instead."""
    if type(value) is not dict:
        return False
    return kind == "row" or all(type(v) is list for v in value.values())
