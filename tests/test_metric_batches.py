"""Batched metrics: the job's writer sends one metric's run.log() values of a flush as one
"scalars" line (runctl/job/events.py's encode_batch), the store keeps it as one packed row
(store.pack_scalars), and every reader expands it: nothing lost, duplicated, reordered
or retyped, and a forged batch is refused without losing its neighbours."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from runctl.job.events import encode_batch
from runctl.ops.sync import sync_run
from runctl.store.sqlite import Store
from runctl.testing import FakeBackend


def lines(events: list[tuple]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in encode_batch(events).split("\n")]


def test_the_writer_batches_one_metrics_plain_numbers_and_keeps_the_rest_in_place() -> None:
    events = [("scalar", "loss", 1.0, None, 1.0, None), ("scalar", "acc", 1, None, 1.1, None),
              ("tag", "t", "v", None, 1.2, None), ("scalar", "loss", 0.5, None, 1.3, None),
              ("scalar", "acc", 2, None, 1.4, None), ("scalar", "loss", True, None, 1.5, None),
              ("scalar", "loss", 0.25, None, 1.6, {"r": "child"}), ("scalar", "loss", 0.1, 7, 1.7, None),
              ("scalar", "loss", float("nan"), None, 1.8, None)]
    got = lines(events)
    assert [g["k"] for g in got] == ["scalars", "scalars", "tag", "scalar", "scalar", "scalar"]
    from runctl.job.events import unpack_line_values

    loss = unpack_line_values(got[0])
    assert loss[:2] == [1.0, 0.5] and math.isnan(loss[2]) and got[0]["c"] == 3 and got[0]["vt"] == "d"
    assert unpack_line_values(got[1]) == [1, 2] and got[1]["vt"] == "q", "ints stay ints"
    assert set(got[1]) == {"k", "n", "v", "c", "vt", "vb", "tb"}, "packed as the store keeps them"
    assert got[3]["v"] is True and got[4] == {"k": "scalar", "n": "loss", "v": 0.25, "t": 1.6, "r": "child"}
    assert got[5]["s"] == 7, "a value with a step does not join values without one"


def expanded(events: list[tuple]) -> dict[str, list[tuple[Any, Any, Any]]]:
    """Each metric's (value, step, time) in order, from the lines encode_batch made."""
    import array
    import base64

    out: dict[str, list[tuple[Any, Any, Any]]] = {}
    for rec in lines(events):
        if rec["k"] != "scalars":
            out.setdefault(rec["n"], []).append((rec["v"], rec.get("s"), rec["t"]))
            continue
        cols = {}
        for field, code in (("vb", rec["vt"]), ("tb", "d"), ("sb", "q")):
            if field in rec:
                cols[field] = array.array(code, base64.b64decode(rec[field])).tolist()
        steps = cols.get("sb", [None] * rec["c"])
        out.setdefault(rec["n"], []).extend(zip(cols["vb"], steps, cols["tb"]))
    return out


def test_the_column_path_and_the_general_path_agree() -> None:
    """The usual flush (plain numbers, one run, a few names) is packed column by column;
    anything else takes the general path: both give every metric's values in order, typed."""
    from runctl.job import events as _writer

    cases = [
        [("scalar", "loss", 1.0 / (i + 1), None, 10.0 + i, None) for i in range(500)],
        [("scalar", ("loss", "acc", "lr")[i % 3], i * 0.5, i, 10.0 + i, None) for i in range(300)],
        [("scalar", "n", i, None, 1.0, {"r": "child"}) for i in range(50)],
        [("scalar", "a", 1.0, None, 1.0, None), ("scalar", "b", 2.0, None, 2.0, None), ("scalar", "a", 3.0, None, 3.0, None)],
        [("scalar", "big", 2 ** 70, None, 1.0, None), ("scalar", "big", 1, None, 2.0, None)],  # beyond 64 bits
        [("scalar", "m", 1.0, None, 1.0, None), ("scalar", "m", 2, None, 2.0, None)],  # float then int
        [("scalar", "m", 1.0, 1, 1.0, None), ("scalar", "m", 2.0, None, 2.0, None)],  # steps given and not
        [("scalar", f"m{i}", 1.0, None, 1.0, None) for i in range(40)],  # many names
    ]
    general = _writer._uniform_batch
    for events in cases:
        fast = expanded(events)
        _writer._uniform_batch = lambda e: None
        try:
            slow = expanded(events)
        finally:
            _writer._uniform_batch = general
        assert fast == slow, events[:3]
        for name in {e[1] for e in events}:
            assert [v for v, _, _ in fast[name]] == [e[2] for e in events if e[1] == name]
            assert [type(v) for v, _, _ in fast[name]] == [type(e[2]) for e in events if e[1] == name]
    assert _writer._uniform_batch(cases[0]) is not None and _writer._uniform_batch(cases[4]) is None


def test_batches_are_stored_once_and_read_back_exactly(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    events = [("scalar", "loss", 1.0 / (i + 1), None, 100.0 + i, None) for i in range(1000)]
    events += [("scalar", "epoch", i, i * 10, 200.0 + i, {"d": "the epoch"}) for i in range(5)]
    events += [("scalar", "loss", float("inf"), None, 300.0, None), ("scalar", "loss", -0.0, None, 300.5, None)]
    (backend.run_dir / "events.jsonl").write_text(encode_batch(events) + "\n")
    for _ in range(2):  # idempotent
        sync_run(store, backend, store.get(rid))
    losses = [v for _, n, v in store.metric_events(rid) if n == "loss"]
    assert losses[:1000] == [1.0 / (i + 1) for i in range(1000)] and losses[1000:] == [float("inf"), -0.0]
    epochs = [v for _, n, v in store.metric_events(rid) if n == "epoch"]
    assert epochs == [0, 1, 2, 3, 4] and all(type(v) is int for v in epochs)
    rows = [r for r in store.metric_rows(rid) if r["name"] == "epoch"]
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40]
    assert [round(r["ts"], 6) for r in rows] == [200.0 + i for i in range(5)]
    assert store.db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 2, "one row per batch"


def test_a_forged_batch_is_skipped_and_its_neighbours_kept(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    good = {"k": "scalar", "n": "ok", "v": 1.0, "t": 0}
    forged = [{"k": "scalars", "n": "x", "v": [1, "two"], "t": [0, 0]},
              {"k": "scalars", "n": "x", "v": [1.0, 2.0], "t": [0]},
              {"k": "scalars", "n": "x", "v": [1, 2], "t": [0, 0], "s": [1, 2.5]},
              {"k": "scalars", "n": "x", "v": [2 ** 70, 1], "t": [0, 0]},
              {"k": "scalars", "n": "x", "v": [], "t": []},
              {"k": "scalars", "n": "x", "v": [1.0], "t0": 1.0, "dt": [0.5]},
              {"k": "scalars", "n": "x", "v": [1.0], "t0": "now", "dt": [0]},
              {"k": "scalars", "n": "x", "v": None, "c": 2, "vt": "d", "vb": "AAAA"},  # 3 bytes for 2 values
              {"k": "scalars", "n": "x", "v": None, "c": 1, "vt": "z", "vb": "AAAAAAAAAAA="},
              {"k": "scalars", "n": "x", "v": None, "c": 1, "vt": "d", "vb": "not base64!"}]
    with_times = {"k": "scalars", "n": "ok", "v": [2.0, 3.0], "t": [5.0, 6.0]}  # full times: accepted too
    (backend.run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [good, *forged, with_times]))
    sync_run(store, backend, store.get(rid))
    assert list(store.metric_events(rid)) == [("scalar", "ok", 1.0), ("scalar", "ok", 2.0), ("scalar", "ok", 3.0)]
    assert [r["ts"] for r in store.metric_rows(rid)][1:] == [5.0, 6.0]
    assert any(k.startswith("runctl.sync_warning") for k in store.properties(rid))


def test_a_version_2_store_gains_packed_metrics(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "runctl.db")
    store = Store(tmp_path)
    store.db.execute("PRAGMA user_version = 2")
    store.close()
    db.execute("CREATE TABLE t_old AS SELECT * FROM metrics")  # (drop the new column: a v2 table)
    db.execute("DROP TABLE metrics")
    db.execute("CREATE TABLE metrics (seq INTEGER PRIMARY KEY, run INTEGER NOT NULL, kind TEXT NOT NULL, "
               "name TEXT NOT NULL, value TEXT NOT NULL, step INTEGER, ts REAL, description TEXT)")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert "packed" in [r[1] for r in store.db.execute("PRAGMA table_info(metrics)")]
    from runctl.store.sqlite import SCHEMA_VERSION

    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_huge_ints_and_every_reader_agree_on_a_packed_batch(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    events = [("scalar", "big", 2 ** 70, None, 1.0, None), ("scalar", "big", 1, None, 2.0, None),
              ("scalar", "x", 0.5, 3, 3.0, None), ("scalar", "x", 0.25, 4, 4.0, None)]
    (backend.run_dir / "events.jsonl").write_text(encode_batch(events) + "\n")
    sync_run(store, backend, store.get(rid))
    assert [v for _, n, v in store.metric_events(rid) if n == "big"] == [2 ** 70, 1], "beyond 64 bits: lines of their own"
    rows = [r for r in store.metric_rows(rid) if r["name"] == "x"]
    assert [(json.loads(r["value"]), r["step"], r["ts"]) for r in rows] == [(0.5, 3, 3.0), (0.25, 4, 4.0)]
