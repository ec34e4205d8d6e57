"""What the portal's JSON API answers, read from the store (one Store, so one SQLite
connection, per server thread: see app.py). Series are downsampled on the server, min/max
per pixel bucket, and every answer says whether and how."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl.errors import InputError
from runctl.job import protocol
from runctl.status import RunStatus
from runctl.store.sqlite import RunRecord, Store, unpack_scalars

if TYPE_CHECKING:
    from runctl.ops.session import Session

from runctl.ops.runs import ENVIRONMENT_PROPERTY, environment_record

MAX_POINTS_DEFAULT = 2000  # a chart a couple of thousand pixels wide needs no more
LOG_TAIL_BYTES = 256 << 10


def run_row(store: Store, r: RunRecord, metrics: list[str]) -> dict[str, Any]:
    """A run as the runs table shows it."""
    end = r.ended_at or (time.time() if r.started_at and not r.status.is_terminal else None)
    latest = {}
    for name in metrics:
        latest[name] = store.latest_scalar(r.id, name)
    return {**r.summary(), "kind": r.kind, "parent_id": r.parent_id, "tags": store.tags(r.id),
            "duration_s": (end - r.started_at) if end and r.started_at else None, "latest": latest}


def experiments(store: Store) -> list[dict[str, Any]]:
    return [{"name": n, "runs": c, "last_created": t, "active": a} for n, c, t, a in store.experiment_summaries()]


SORTS = {"created": lambda r: r["created_at"] or "", "status": lambda r: r["status"],
         "duration": lambda r: r["duration_s"] or 0.0, "number": lambda r: r["number"]}


def runs(store: Store, experiment: str | None, status: str | None, tag: str | None, sort: str,
         metrics: list[str], limit: int = 500) -> list[dict[str, Any]]:
    want = None
    if status:
        try:
            want = RunStatus.parse(status)
        except ValueError:
            raise InputError(f"status {status!r}: one of {', '.join(s.value for s in RunStatus)}") from None
    rows = [run_row(store, r, metrics) for r in store.runs(experiment=experiment, status=want, limit=limit)]
    if tag:
        key, _, value = tag.partition(":")
        rows = [r for r in rows if key in r["tags"] and (not value or r["tags"][key] == value)]
    key = sort.lstrip("-")
    if key not in SORTS:
        raise InputError(f"sort {sort!r}: one of {', '.join(SORTS)} (prefix - for descending)")
    rows.sort(key=SORTS[key], reverse=sort.startswith("-"))
    return rows


MAX_COMPARED = 20


def compare(session: Session, run_ids: list[str]) -> dict[str, Any]:
    """What the compare view tabulates for each run: its parameters (arguments, tags, a
    sweep's values are tags too) and each metric's final value; and the names of the metrics
    to chart (the script's, and the system/* samples apart)."""
    from runctl.job.sysmetrics import is_system
    from runctl.ops.diff import metric_summary

    if not 2 <= len(run_ids) <= MAX_COMPARED:
        raise InputError(f"compare 2 to {MAX_COMPARED} runs, not {len(run_ids)}")
    rows: list[dict[str, Any]] = []
    names: set[str] = set()
    for rid in run_ids:
        r = session.store.resolve(rid)
        summary = metric_summary(session, r)
        names.update(summary)
        job = (r.spec or {}).get("job") or {}
        rows.append({"id": r.id, "display_name": r.display_name, "status": r.status.value,
                     "compute_target": r.compute_target, "arguments": [str(a) for a in job.get("arguments") or []],
                     "tags": session.store.tags(r.id), "final": {n: s["last"] for n, s in summary.items()}})
    return {"runs": rows, "metrics": sorted(n for n in names if not is_system(n)),
            "system_metrics": sorted(n for n in names if is_system(n))}


def run_detail(store: Store, r: RunRecord) -> dict[str, Any]:
    spec = r.spec or {}
    children = [run_row(store, c, []) for c in store.runs(parent_id=r.id)]
    names = store.metric_names(r.id)
    props = store.properties(r.id)
    return {**run_row(store, r, []), "description": r.description, "backend": r.backend,
            "config": spec.get("job"), "job_file": spec.get("job_file"),
            "properties": {k: v for k, v in props.items() if k != ENVIRONMENT_PROPERTY},
            "environment_record": environment_record(props),
            "children": children, "metrics": [{"name": n, "kind": k, "count": c} for n, k, c in names],
            "logs": files(store, r.id, protocol.LOGS_DIR), "outputs": files(store, r.id, protocol.OUTPUTS_DIR),
            "images": [{"name": n, "path": image_path(v)} for n, v in store.logged_images(r.id)],
            **({"tuning": tuning(store, r)} if r.kind == "hyperdrive" else {})}


MAX_TRIAL_SERIES = 50  # the chart of a tuning run's trials: the best this many


def tuning(store: Store, r: RunRecord) -> dict[str, Any]:
    """A tuning run's trials, best first (runctl/ops/trials.py), and each one's reports of the
    primary metric for the chart (x: the report's number)."""
    from runctl.ops import trials

    section = trials.tuning_of(r) or {}
    rows = [{**row, "best": finite(row["best"]), "last": finite(row["last"])} for row in trials.table(store, r)]
    series = [{"id": row["id"], "y": [finite(v) for v in trials.reports(store, row["id"], section["primary_metric_name"])]}
              for row in rows[:MAX_TRIAL_SERIES] if row["reports"]]
    return {"primary_metric_name": section.get("primary_metric_name"), "goal": section.get("primary_metric_goal"),
            "sampling": section.get("sampling"), "policy": section.get("policy"),
            "max_total_runs": section.get("max_total_runs"), "max_concurrent_runs": section.get("max_concurrent_runs"),
            "best_run": trials.best_run(store, r), "trials": rows, "series": series,
            "series_note": (f"the best {MAX_TRIAL_SERIES} of {len(rows)} trials" if len(rows) > MAX_TRIAL_SERIES
                            else "")}


def image_path(artifact: Any) -> str:
    """Where a logged image lies in the run's folder (the Run API's file names: outputs/...
    and logs/... as they are, anything else under artifacts/)."""
    name = str(artifact)
    return name if name.split("/", 1)[0] in (protocol.OUTPUTS_DIR, protocol.LOGS_DIR) else f"artifacts/{name}"


def files(store: Store, run_id: str, sub: str) -> list[dict[str, Any]]:
    """Regular files under the run's folder in the store (links are not followed)."""
    root = store.run_dir(run_id) / sub
    out = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
        for n in names:
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                out.append({"path": p.relative_to(store.run_dir(run_id)).as_posix(), "size": p.stat().st_size})
    return sorted(out, key=lambda f: f["path"])


def store_file(store: Store, run_id: str, rel: str) -> Path:
    """The file ``rel`` of a run in the store, or InputError: only logs/, outputs/ and
    artifacts/ (logged images), never through a link, never outside the run's folder."""
    base = store.run_dir(run_id).resolve()
    parts = Path(rel).parts
    if not parts or parts[0] not in (protocol.LOGS_DIR, protocol.OUTPUTS_DIR, "artifacts") or ".." in parts \
            or Path(rel).is_absolute():
        raise InputError(f"{rel!r}: not a file of this run")
    path = base.joinpath(*parts)
    probe = base
    for part in parts:
        probe = probe / part
        if probe.is_symlink():
            raise InputError(f"{rel!r}: not a file of this run")
    if not path.is_file() or base not in path.resolve().parents:
        raise InputError(f"{rel!r}: no such file")
    return path


def metric(store: Store, run_id: str, name: str, max_points: int = MAX_POINTS_DEFAULT,
           x_axis: str = "step") -> dict[str, Any]:
    """One metric, ready to chart: a scalar series (downsampled min/max per bucket past
    ``max_points``), rows/tables as columns, lists as a series."""
    kinds = store.metric_kinds(run_id, name)
    if not kinds:
        raise InputError(f"run {run_id} has no metric {name!r}")
    if "scalar" in kinds or "scalars" in kinds:
        return scalar_series(store, run_id, name, max_points, x_axis)
    from runctl.job.context._shape import shape_metrics

    shaped = shape_metrics(store.metric_events(run_id, name)).get(name)
    if isinstance(shaped, dict):
        cols = {k: (v if isinstance(v, list) else [v]) for k, v in shaped.items()}
        total = max((len(v) for v in cols.values()), default=0)
        return {"name": name, "kind": "rows", "columns": cols, "total": total}
    values = shaped if isinstance(shaped, list) else [shaped]
    answer = {"name": name, "kind": "list", "total": len(values)}
    if len(values) <= max_points:
        return {**answer, "x": list(range(len(values))), "y": values, "shown": len(values), "downsampled": False}
    ys = [y if type(y) in (int, float) and math.isfinite(y) else None for y in values]  # type: ignore[arg-type]
    return {**answer, **downsampled(list(range(len(ys))), ys, max_points)}


def scalar_series(store: Store, run_id: str, name: str, max_points: int, x_axis: str = "step") -> dict[str, Any]:
    """x = the step where every value has one, else the value's index (or, with ``x_axis``
    "time", when it was logged, in seconds since the epoch); y = the value (null
    for NaN and infinities, which a chart cannot place). Past ``max_points`` values, each of
    max_points/2 buckets (equal counts of values) contributes its minimum and its maximum,
    in x order: every peak and dip stays visible, and the answer says so."""
    ys: list[Any] = []
    steps: list[Any] = []
    times: list[Any] = []
    for value, step, ts, packed in store.scalar_rows(run_id, name):
        if packed is not None:
            vals, tss, st = unpack_scalars(packed)
            ys.extend(vals)
            steps.extend(st if st is not None else [None] * len(vals))
            times.extend(tss if tss is not None else [ts] * len(vals))
        else:
            ys.append(json.loads(value))
            steps.append(step)
            times.append(ts)
    ys = [y if type(y) in (int, float) and math.isfinite(y) else None for y in ys] if not _all_finite(ys) else ys
    total = len(ys)
    if x_axis == "time" and total and None not in times:
        xs, label = times, "time"
    elif total and None not in steps:
        xs, label = steps, "step"
    else:
        xs, label = list(range(total)), "index"
    answer = {"name": name, "kind": "scalar", "x_label": label, "total": total}
    if total <= max_points:
        return {**answer, "x": xs, "y": ys, "shown": total, "downsampled": False}
    return {**answer, **downsampled(xs, ys, max_points)}


def downsampled(xs: list[Any], ys: list[Any], max_points: int) -> dict[str, Any]:
    """Each of max_points/2 buckets (equal counts of values) gives its minimum and its maximum,
    in x order: every peak and dip stays visible. ``ys`` holds numbers or None."""
    total = len(ys)
    buckets = max(1, max_points // 2)
    out_x: list[Any] = []
    out_y: list[Any] = []
    for b in range(buckets):
        lo, hi = b * total // buckets, (b + 1) * total // buckets
        seg = ys[lo:hi]
        if None in seg:  # (NaN or infinity logged: rare) skip those
            seg = [y if y is not None else math.nan for y in seg]
            finite_ys = [y for y in seg if y == y]
            if not finite_ys:
                continue
            low, high = seg.index(min(finite_ys)), seg.index(max(finite_ys))
        else:
            low, high = seg.index(min(seg)), seg.index(max(seg))
        for i in sorted({lo + low, lo + high}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return {"x": out_x, "y": out_y, "shown": len(out_x), "downsampled": True,
            "method": f"min and max of each of {buckets} buckets of {total // buckets} values"}


def _all_finite(ys: list[Any]) -> bool:
    try:
        return math.isfinite(math.fsum(ys))
    except (TypeError, OverflowError):
        return False


def log_tail(store: Store, run_id: str, name: str, offset: int | None) -> dict[str, Any]:
    """Bytes of a log the store holds from ``offset`` (None: its last 256 KiB), as text."""
    empty = {"name": name, "text": "", "start": 0, "offset": 0, "size": 0}
    try:
        path = store_file(store, run_id, name or protocol.LOG_FILE)
        size = path.stat().st_size
    except InputError as e:
        if "no such file" in str(e):
            return empty  # not synced yet
        raise
    except OSError:
        return empty
    start = max(0, size - LOG_TAIL_BYTES) if offset is None else max(0, min(offset, size))
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(LOG_TAIL_BYTES)
    return {"name": name, "text": data.decode("utf-8", errors="replace"), "start": start, "offset": start + len(data),
            "size": size}


def change_marks(store: Store, run_ids: list[str]) -> dict[str, Any]:
    """What a watcher compares to see whether a run changed: status, newest metric, log size."""
    out = {}
    for rid in run_ids:
        row = store.change_mark(rid)
        if row is None:
            continue
        try:
            size = (store.run_dir(rid) / protocol.LOG_FILE).stat().st_size
        except OSError:
            size = 0
        out[rid] = {"status": row[0], "metrics_seq": row[1], "log_size": size, "synced": row[2]}
    return out


def finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: the API sends them as null (the page says so)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value
