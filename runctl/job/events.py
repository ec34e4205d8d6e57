"""The events.jsonl record format, written and read here only (stdlib only, Python >= 3.8).

A job's run context appends one JSON object per line to RUN_DIR/events.jsonl; runctl reads the
file's complete lines from the offset it stored, so a torn last line waits for the next sync.
A record has these fields:

- ``k``: the kind: ``scalar`` (one value of run.log()), ``scalars`` (a batch of one metric's
  values, below), ``list``, ``row``, ``table``, ``image``, ... (metric kinds), and the run
  events ``tag``, ``property``, ``model``, ``display_name``, ``run`` (a child run's start),
  ``status`` (a child run's end);
- ``n``: the name; ``v``: the value (any JSON; non-finite floats as the strings "NaN",
  "Infinity", "-Infinity" in scalars); ``t``: the time (seconds); ``s``: the step (an int);
  ``d``: a description; ``r``: the child run the record belongs to (absent: the run itself);
- a ``scalars`` batch holds ``v`` (values) with ``t0`` + ``dt`` (microseconds after t0) or
  ``t`` (times), and ``s`` (steps) as lists; or, packed by the writer, ``c`` (count), ``vt``
  (the values' array type code, "d" or "q"), ``vb``/``tb``/``sb`` (base64 of 8-byte
  little-endian values, times, steps).

Everything a job wrote is hostile to runctl: ``parse_lines`` and ``valid_event`` check shapes
and field types before anything is stored.
"""

import array
import base64
import itertools
import json
import sys
from operator import itemgetter


def _json_default(value):
    raise TypeError("value of type %s is not JSON serialisable" % type(value).__name__)


def event_record(ev) -> dict:
    kind, name, value, step, ts, extra = ev
    rec = {"k": kind, "n": name, "v": value, "t": ts}
    if step is not None:
        rec["s"] = step
    if extra:
        rec.update(extra)
    return rec


def encode_event(ev) -> str:
    try:
        return json.dumps(event_record(ev), default=_json_default, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError):  # checked at the call; this only guards odd subclasses
        return json.dumps(event_record(ev[:2] + (repr(ev[2]),) + ev[3:]), default=repr, separators=(",", ":"))


_NAMES: dict = {}


def _number(value, t):
    if t is int:
        return "%d" % value
    if value != value:
        return "NaN"
    if value in (_INF, -_INF):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


_INF = float("inf")


def encode_line(ev) -> str:
    """encode_event, with a fast path for the common case: a plain number logged by run.log()."""
    kind, name, value, step, ts, extra = ev
    t = type(value)
    if kind == "scalar" and extra is None and (t is float or t is int) and (step is None or type(step) is int):
        n = _NAMES.get(name)
        if n is None:
            n = json.dumps(name)
            if len(_NAMES) < 10000:  # names built from loop variables must not grow this forever
                _NAMES[name] = n
        if step is None:
            return '{"k":"scalar","n":%s,"v":%s,"t":%r}' % (n, _number(value, t), ts)
        return '{"k":"scalar","n":%s,"v":%s,"t":%r,"s":%d}' % (n, _number(value, t), ts, step)
    return encode_event(ev)


BATCH_MIN = 2  # this many values of one metric in one flush travel as one "scalars" line


def encode_batch(events) -> str:
    """The lines for ``events``, in order, except that the plain numbers run.log() gave one
    metric (same name, run and description; all floats or all ints; steps all given or
    none) become ONE line (``_batch_line``) at the place of the first: the store keeps such a
    batch as one row, so a million values cost no parse per value."""
    if len(events) >= BATCH_MIN:
        uniform = _uniform_batch(events)
        if uniform is not None:
            return uniform
    slots = []
    groups: dict = {}
    get = groups.get
    for ev in events:
        kind, name, value, step, _ts, extra = ev
        t = type(value)
        if kind != "scalar" or (t is not float and t is not int) or (step is not None and type(step) is not int):
            slots.append(ev)
            continue
        # the common case (a float, no step, no child run, no description) is keyed by the name alone
        key = name if (t is float and step is None and extra is None) else (
            name, t, step is None, None if extra is None else json.dumps(extra, sort_keys=True, default=repr))
        group = get(key)
        if group is None:
            group = groups[key] = []
            slots.append(group)
        group.append(ev)
    lines = []
    for slot in slots:
        if type(slot) is not list:
            lines.append(encode_line(slot))
        elif len(slot) < BATCH_MIN:
            lines.extend(map(encode_line, slot))
        else:
            lines.append(_batch_line(slot))
    return "\n".join(lines)


UNIFORM_MAX_NAMES = 16


def _uniform_batch(events):
    """encode_batch's lines, made column by column at C speed, for the usual flush: only
    run.log() numbers, all floats or all ints, steps all given (ints) or none, the same run
    and no description, a few metric names. None for anything else (the general path)."""
    n = len(events)
    if set(map(itemgetter(0), events)) != {"scalar"}:
        return None
    extras = list(map(itemgetter(5), events))
    if extras.count(extras[0]) != n:
        return None
    names, values, steps, times = (list(map(itemgetter(i), events)) for i in (1, 2, 3, 4))
    types = set(map(type, values))
    if types != {float} and types != {int}:
        return None
    no_steps = steps.count(None)
    if no_steps not in (0, n) or (not no_steps and set(map(type, steps)) != {int}):
        return None
    distinct = set(names)
    if len(distinct) > UNIFORM_MAX_NAMES or set(map(type, distinct)) != {str}:
        return None
    code = "d" if float in types else "q"
    extra = extras[0]
    lines = []
    try:
        for name in sorted(distinct, key=names.index):  # in the order of each metric's first value
            if len(distinct) == 1:
                vs, ts, ss = values, times, steps
            else:
                mine = list(map(name.__eq__, names))
                vs, ts, ss = (list(itertools.compress(col, mine)) for col in (values, times, steps))
            if len(vs) < BATCH_MIN:
                lines.append(encode_line(("scalar", name, vs[0], ss[0], ts[0], extra)))
                continue
            lines.append(_scalars_line(name, code, vs, ts, None if no_steps else ss, extra))
    except OverflowError:  # an int beyond 64 bits: the general path sends it as a line of its own
        return None
    return "\n".join(lines)


def _packed(typecode, values):
    """``values`` as little-endian 8-byte numbers, base64: what the store keeps, as it keeps it."""
    a = array.array(typecode, values)
    if sys.byteorder != "little":
        a.byteswap()
    return base64.b64encode(a).decode("ascii")  # (the array's own buffer: no copy of it first)


def _batch_line(slot):
    """One metric's values as ONE line: {"k": "scalars", "n", "v": null, "c": count, "vt": "d" (floats) or
    "q" (ints), "vb": values, "tb": times, "sb": steps} with the arrays packed as the store
    keeps them (8-byte little-endian, base64), so that ingesting them is a copy, not a parse
    per value. Ints beyond 64 bits go as lines of their own."""
    _, name, value, step, _, extra = slot[0]
    code = "d" if type(value) is float else "q"
    try:
        return _scalars_line(name, code, [ev[2] for ev in slot], [ev[4] for ev in slot],
                             None if step is None else [ev[3] for ev in slot], extra)
    except OverflowError:
        return "\n".join(map(encode_line, slot))


def _scalars_line(name, code, values, times, steps, extra):
    """The "scalars" line. The packed arrays are base64 (nothing in them needs escaping), so
    they are placed in the line as they are: json.dumps would scan tens of megabytes."""
    head = {"k": "scalars", "n": name, "v": None, "c": len(values), "vt": code}
    if extra:
        head.update(extra)
    parts = [json.dumps(head, separators=(",", ":"), default=repr)[:-1], ',"vb":"', _packed(code, values),
             '","tb":"', _packed("d", times)]
    if steps is not None:
        parts += ['","sb":"', _packed("q", steps)]
    parts.append('"}')
    return "".join(parts)


def unpack_line_values(rec):
    """The values of a batch line (either form: packed "vb", or a "v" list)."""
    if rec.get("vb") is None:
        return list(rec.get("v") or [])
    a = array.array(rec["vt"])
    a.frombytes(base64.b64decode(rec["vb"]))
    if sys.byteorder != "little":
        a.byteswap()
    return a.tolist()


def values_of(rec):
    """(run, kind, name, value) of every value a record holds (a batch: each of its values)."""
    if rec["k"] == "scalars":
        return [(rec.get("r"), "scalar", rec["n"], v) for v in unpack_line_values(rec)]
    return [(rec.get("r"), rec["k"], rec["n"], rec["v"])]


def read_file(path):
    """(run, kind, name, value) of every value in the complete lines of an events.jsonl."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                out.extend(values_of(json.loads(line)))
    return out


def parse_lines(data):
    """Complete lines of events.jsonl -> (events, number of lines that could not be used).
    The whole chunk is parsed as one JSON array (one C-level call); if a line is damaged,
    line by line. A line that is not a well-formed record is counted, never fatal; field
    types are left to ``valid_event`` (the store checks them, event by event only when a
    chunk does not fit)."""
    text = data.decode("utf-8", errors="replace")
    lines = [ln for ln in text.split("\n") if ln.strip()]
    try:
        parsed = json.loads("[" + ",".join(lines) + "]")
    except (ValueError, RecursionError):
        parsed = []
        for ln in lines:
            try:
                parsed.append(json.loads(ln))
            except (ValueError, RecursionError):
                parsed.append(None)  # a line damaged on disk cannot be recovered; the rest still counts
    events = [ev for ev in parsed if type(ev) is dict and "k" in ev and "n" in ev and "v" in ev]
    return events, len(parsed) - len(events)


FIELD_TYPES = {"k": (str,), "n": (str,), "r": (str, type(None)), "s": (int, type(None)),
               "t": (int, float, type(None)), "d": (str, type(None))}


def valid_fields(ev):
    """Do a record's fields (a batch aside: its arrays are the store's to check) have their types?"""
    return (isinstance(ev, dict) and "v" in ev and type(ev.get("s")) is not bool
            and all(isinstance(ev.get(key), types) for key, types in FIELD_TYPES.items()))


def batch_count(ev):
    """How many values a ``scalars`` batch holds."""
    return int(ev["c"]) if "vb" in ev else len(ev["v"])
