"""`runctl diff A B`: why is this run different from that one? Code (from the snapshots'
manifests: unchanged files cost nothing), configuration, environment, metrics, tags and
properties, as one JSON-able dict with the top-level keys ``code``, ``config``,
``environment``, ``metrics``, ``tags`` (and ``runs``); ``render`` makes text of it."""

from __future__ import annotations

import difflib
import json
from typing import Any

from runctl.errors import InputError
from runctl.ops.session import Session
from runctl.store.sqlite import RunRecord

MAX_TEXT_BYTES = 1 << 20  # larger files are compared by size and digest only
MAX_DIFF_LINES = 2000  # per file


def baseline(session: Session, record: RunRecord) -> RunRecord:
    """What `runctl diff A` compares A with: the run it was rerun from, else the previous run
    of its experiment."""
    store = session.store
    source = store.properties(record.id).get("runctl.rerun_of")
    if source:
        try:
            return store.get(source)
        except InputError:
            pass
    earlier = [r for r in store.runs(experiment=record.experiment) if r.number < record.number]
    if not earlier:
        raise InputError(f"run {record.id} is the first of experiment {record.experiment!r} and no rerun: "
                         f"name the run to compare with (`runctl diff {record.id} OTHER`)")
    return max(earlier, key=lambda r: r.number)


def diff_runs(session: Session, a: RunRecord, b: RunRecord, texts: bool = True) -> dict[str, Any]:
    store = session.store
    return {
        "runs": [_run_ref(a), _run_ref(b)],
        "code": code_diff(session, a, b, texts),
        "config": config_diff(a, b),
        "environment": environment_diff(session, a, b),
        "metrics": metrics_diff(session, a, b),
        "tags": {"tags": _dict_diff(store.tags(a.id), store.tags(b.id)),
                 "properties": _dict_diff(_user_props(store.properties(a.id)), _user_props(store.properties(b.id)))},
    }


def _run_ref(r: RunRecord) -> dict[str, Any]:
    return {"id": r.id, "experiment": r.experiment, "number": r.number, "status": r.status.value,
            "compute_target": r.compute_target, "snapshot_id": r.snapshot_id}


def _user_props(props: dict[str, str]) -> dict[str, str]:
    """Properties but runctl's own bookkeeping (sync warnings, the rerun source, the snapshot
    id and the environment record, which the code and environment parts compare)."""
    return {k: v for k, v in props.items() if not k.startswith(("runctl.sync_warning.", "runctl.rerun_of"))
            and k not in ("ContentSnapshotId", "runctl.environment")}


def _dict_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# -- code ------------------------------------------------------------------------------
def code_diff(session: Session, a: RunRecord, b: RunRecord, texts: bool = True) -> dict[str, Any]:
    objects = session.store.objects
    manifests = []
    for r in (a, b):
        if not r.snapshot_id:
            return {"available": False, "why": f"run {r.id} has no snapshot (an interactive run)"}
        try:
            manifests.append(objects.manifest(r.snapshot_id))
        except (OSError, ValueError):
            return {"available": False, "why": f"run {r.id}'s snapshot {r.snapshot_id} was garbage-collected"}
    fa = {rel: (digest, size) for rel, digest, size, _mode in manifests[0]["files"]}
    fb = {rel: (digest, size) for rel, digest, size, _mode in manifests[1]["files"]}
    la, lb = dict(map(tuple, manifests[0]["links"])), dict(map(tuple, manifests[1]["links"]))
    if a.snapshot_id == b.snapshot_id:
        return {"available": True, "same": True, "files": [], "added": 0, "removed": 0, "changed": 0, "renamed": 0}
    removed = sorted(set(fa) - set(fb))
    added = sorted(set(fb) - set(fa))
    renamed = []
    by_digest: dict[str, list[str]] = {}
    for rel in added:
        by_digest.setdefault(fb[rel][0], []).append(rel)
    for rel in list(removed):
        twins = by_digest.get(fa[rel][0])
        if twins:
            new = twins.pop(0)
            renamed.append((rel, new))
            removed.remove(rel)
            added.remove(new)
    files: list[dict[str, Any]] = []
    for rel in removed:
        files.append({"path": rel, "change": "removed", "a": _side(fa[rel]), "b": None})
    for rel in added:
        files.append({"path": rel, "change": "added", "a": None, "b": _side(fb[rel])})
    for old, new in renamed:
        files.append({"path": new, "change": "renamed", "from": old, "a": _side(fa[old]), "b": _side(fb[new])})
    for rel in sorted(set(fa) & set(fb)):
        if fa[rel][0] != fb[rel][0]:
            files.append({"path": rel, "change": "changed", "a": _side(fa[rel]), "b": _side(fb[rel])})
    for rel in sorted(set(la) | set(lb)):
        if la.get(rel) != lb.get(rel):
            files.append({"path": rel, "change": "link", "a": la.get(rel), "b": lb.get(rel)})
    files.sort(key=lambda f: f["path"])
    missing = 0
    for f in files:
        if f["change"] in ("changed", "added", "removed") and texts:
            f["diff"], gone = _text_diff(objects, f)
            missing += gone
    out = {"available": True, "same": False, "files": files, "added": len(added), "removed": len(removed),
           "changed": sum(f["change"] == "changed" for f in files), "renamed": len(renamed)}
    if missing:
        out["why"] = f"{missing} file(s) could not be compared: their objects were garbage-collected"
    return out


def _side(entry: tuple[str, int]) -> dict[str, Any]:
    return {"digest": entry[0], "size": entry[1]}


def _text_diff(objects: Any, f: dict[str, Any]) -> tuple[list[str] | None, int]:
    """The unified diff of a text file's two sides (None: binary, too large, or gone)."""
    sides: list[list[str]] = []
    for side in (f["a"], f["b"]):
        if side is None:
            sides.append([])
            continue
        if side["size"] > MAX_TEXT_BYTES:
            return None, 0
        try:
            data = objects.object_path(side["digest"]).read_bytes()
        except OSError:
            f["note"] = "object garbage-collected"
            return None, 1
        if b"\0" in data[:8192]:
            f["binary"] = True
            return None, 0
        try:
            sides.append(data.decode("utf-8").splitlines())
        except UnicodeDecodeError:
            f["binary"] = True
            return None, 0
    lines = list(difflib.unified_diff(sides[0], sides[1], "a/" + f.get("from", f["path"]), "b/" + f["path"], lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return lines, 0


# -- configuration and environment ------------------------------------------------------
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def config_diff(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    ja, jb = ((r.spec or {}).get("job") or {} for r in (a, b))
    ja, jb = dict(ja), dict(jb)
    args = (ja.pop("arguments", None) or [], jb.pop("arguments", None) or [])
    env = (ja.pop("environment", None) or {}, jb.pop("environment", None) or {})
    fields = _dict_diff(_flatten(ja), _flatten(jb))
    out: dict[str, Any] = {"fields": fields, "arguments": None}
    if args[0] != args[1]:
        out["arguments"] = {"a": args[0], "b": args[1], "changed": _argument_changes(args[0], args[1])}
    out["environment_fields"] = _dict_diff(_flatten(env[0]), _flatten(env[1]))
    return out


def _argument_changes(a: list[Any], b: list[Any]) -> list[dict[str, Any]]:
    """Arguments as ``--name value`` pairs where they are: which names changed value."""
    def pairs(argv: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        i = 0
        while i < len(argv):
            item = str(argv[i])
            if item.startswith("-"):
                name, eq, value = item.partition("=")
                if eq:
                    out[name] = value
                elif i + 1 < len(argv) and not str(argv[i + 1]).startswith("-"):
                    out[name] = argv[i + 1]
                    i += 1
                else:
                    out[name] = True
            else:
                out[f"#{i}"] = item
            i += 1
        return out

    return _dict_diff(pairs(a), pairs(b))


def environment_diff(session: Session, a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """Where and how each ran: target, backend, host; the interpreter; the environment record
    when the run has one (the ``runctl.environment`` property: packages and versions)."""
    def facts(r: RunRecord) -> dict[str, Any]:
        job = (r.spec or {}).get("job") or {}
        python = ((job.get("environment") or {}).get("python") or {}).get("interpreter_path")
        return {"compute_target": r.compute_target, "backend": r.backend, "host": r.host, "python": python}

    out: dict[str, Any] = {"facts": _dict_diff(facts(a), facts(b))}
    records = [session.store.properties(r.id).get("runctl.environment") for r in (a, b)]
    if all(records):
        try:
            ea, eb = (json.loads(x or "{}") for x in records)
        except ValueError:
            ea, eb = {}, {}
        pa, pb = ea.pop("packages", {}) or {}, eb.pop("packages", {}) or {}
        out["packages"] = _dict_diff(pa, pb)
        out["record"] = _dict_diff(_flatten(ea), _flatten(eb))
    else:
        out["note"] = "no environment record on " + ("either run" if not any(records) else "one of the runs")
    return out


# -- metrics -----------------------------------------------------------------------------
def metric_summary(session: Session, r: RunRecord) -> dict[str, dict[str, Any]]:
    """Per numeric metric: its last value, min, max and count (system/* included)."""
    from runctl.ops.runs import metrics

    out: dict[str, dict[str, Any]] = {}
    for system in (False, True):
        for name, value in metrics(session, r, system=system).items():
            values = value if isinstance(value, list) else [value]
            nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if not nums:
                continue
            out[name] = {"last": nums[-1], "count": len(nums)}
            if len(nums) > 1:
                out[name].update(min=min(nums), max=max(nums))
    return out


def metrics_diff(session: Session, a: RunRecord, b: RunRecord) -> list[dict[str, Any]]:
    ma, mb = metric_summary(session, a), metric_summary(session, b)
    return [{"name": n, "a": ma.get(n), "b": mb.get(n), "same": ma.get(n) == mb.get(n)}
            for n in sorted(set(ma) | set(mb))]


# -- text ----------------------------------------------------------------------------------
RED, GREEN, CYAN, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[1m", "\x1b[0m"


def render(d: dict[str, Any], escape: Any, stat: bool = False, color: bool = False) -> list[str]:
    """Lines of text for a diff from ``diff_runs``; every text that came from a run goes
    through ``escape`` (names and values are the job's: no terminal control passes)."""
    def paint(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if color else text

    def show(v: Any) -> str:
        return escape(json.dumps(v, allow_nan=True) if not isinstance(v, str) else v)

    a, b = d["runs"]
    out = [paint(BOLD, f"diff {escape(a['id'])} {escape(b['id'])}")]
    code = d["code"]
    if not code["available"]:
        out.append(paint(BOLD, "code: ") + escape(code["why"]))
    elif code["same"]:
        out.append(paint(BOLD, "code: ") + "the same snapshot")
    else:
        out.append(paint(BOLD, f"code: {code['changed']} changed, {code['added']} added, {code['removed']} removed, "
                               f"{code['renamed']} renamed"))
        if code.get("why"):
            out.append("  " + escape(code["why"]))
        for f in code["files"]:
            sizes = " -> ".join(str(s["size"]) if s else "-" for s in (f["a"], f["b"])) if f["change"] != "link" else ""
            what = f"renamed from {escape(f['from'])}" if f["change"] == "renamed" else f["change"]
            extra = " (binary)" if f.get("binary") else f" ({f['note']})" if f.get("note") else ""
            out.append(f"  {escape(f['path'])}: {what}" + (f", bytes {sizes}" if sizes else "") + extra)
            if f["change"] == "link":
                out[-1] += f": {show(f['a'])} -> {show(f['b'])}"
            if f.get("binary") and f["a"] and f["b"]:
                out[-1] += f", sha256 {f['a']['digest'][:12]} -> {f['b']['digest'][:12]}"
        if not stat:
            for f in code["files"]:
                for line in f.get("diff") or []:
                    colour = (BOLD if line.startswith(("---", "+++")) else RED if line.startswith("-") else
                              GREEN if line.startswith("+") else CYAN if line.startswith("@@") else "")
                    out.append(paint(colour, escape(line)) if colour else escape(line))
    cfg = d["config"]
    changes = len(cfg["fields"]) + len(cfg["environment_fields"]) + (1 if cfg["arguments"] else 0)
    out.append(paint(BOLD, "config: ") + (f"{changes} difference(s)" if changes else "the same"))
    if not stat:
        if cfg["arguments"]:
            out.append(f"  arguments: {show(cfg['arguments']['a'])} -> {show(cfg['arguments']['b'])}")
            for c in cfg["arguments"]["changed"]:
                out.append(f"    {escape(c['key'])}: {show(c['a'])} -> {show(c['b'])}")
        for c in cfg["fields"] + [{**c, "key": "environment." + c["key"]} for c in cfg["environment_fields"]]:
            out.append(f"  {escape(c['key'])}: {show(c['a'])} -> {show(c['b'])}")
    env = d["environment"]
    env_changes = env["facts"] + env.get("record", []) + env.get("packages", [])
    out.append(paint(BOLD, "environment: ") + (f"{len(env_changes)} difference(s)" if env_changes else "the same")
               + (f" ({env['note']})" if env.get("note") else ""))
    if not stat:
        for c in env["facts"] + env.get("record", []):
            out.append(f"  {escape(c['key'])}: {show(c['a'])} -> {show(c['b'])}")
        for c in env.get("packages", []):
            out.append(f"  package {escape(c['key'])}: {show(c['a'])} -> {show(c['b'])}")
    differing = [m for m in d["metrics"] if not m["same"]]
    out.append(paint(BOLD, "metrics: ") + f"{len(differing)} of {len(d['metrics'])} differ")
    if not stat:
        for m in d["metrics"]:
            if m["same"]:
                continue
            out.append(f"  {escape(m['name'])}: {_summary(m['a'], show)} | {_summary(m['b'], show)}")
    tags = d["tags"]["tags"] + d["tags"]["properties"]
    out.append(paint(BOLD, "tags and properties: ") + (f"{len(tags)} difference(s)" if tags else "the same"))
    if not stat:
        for c in tags:
            out.append(f"  {escape(c['key'])}: {show(c['a'])} -> {show(c['b'])}")
    return out


def _summary(s: dict[str, Any] | None, show: Any) -> str:
    if s is None:
        return "-"
    text = f"last {show(s['last'])}"
    if "min" in s:
        text += f" (min {show(s['min'])}, max {show(s['max'])}, {s['count']} values)"
    return text
