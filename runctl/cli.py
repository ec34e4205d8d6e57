"""The ``runctl`` command line (Typer). Thin: parse, call the library, print.

Plain text when piped, a table on a terminal, ``--json`` for scripts; never a prompt.
Errors print one ``error: ...`` line and exit with the code from runctl.errors.
Heavy imports happen inside the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer

from runctl.errors import ConfigError, ExitCode, InputError, RunctlError

app = typer.Typer(
    name="runctl",
    help="Run training scripts on your own compute and keep the history of every run.",
    epilog="Exit codes: 0 ok; 1 error; 2 bad input; 3 the run failed to start; 4 backend unreachable; "
           "wait, --wait and --follow: the run's own exit code (124 time limit, 130 canceled).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
compute_app = typer.Typer(help="Compute targets: list them, check that they work.", no_args_is_help=True)
app.add_typer(compute_app, name="compute", short_help="List and check compute targets.")

def _version(value: bool) -> None:
    if value:
        from runctl import __version__

        print(f"runctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Run training scripts on your own compute and keep the history of every run."""


RunArg = typer.Argument(..., metavar="RUN", help="Run id, a unique prefix of one, or @last.")


def _plain_usage_metavars() -> None:
    """Typer writes a required argument as {RUN} in the usage line; users expect RUN (as
    in every other CLI's usage, and in runctl's README)."""
    from typer.core import TyperArgument

    shown = TyperArgument.make_metavar

    def make_metavar(self: Any, ctx: Any, *, usage: bool = False) -> str:
        var = shown(self, ctx, usage=usage)
        return var[1:-1] if usage and var.startswith("{") and var.endswith("}") else var

    TyperArgument.make_metavar = make_metavar  # type: ignore[method-assign]


_plain_usage_metavars()
JsonOpt = typer.Option(False, "--json", help="Print JSON.")


def _session() -> Any:
    from runctl.ops.session import Session

    return Session()


@contextlib.contextmanager
def _detachable(run_id: str) -> Iterator[None]:
    """Ctrl-C while following or waiting for a run stops watching it: the run goes on."""
    try:
        yield
    except KeyboardInterrupt:
        print(safe(f"\nstopped following run {run_id}; it keeps running: `runctl logs {run_id} --follow` to follow "
                   f"it again, `runctl cancel {run_id}` to stop it"), file=sys.stderr)
        raise typer.Exit(ExitCode.DETACHED) from None


def _session_for_job(job_file: Path) -> Any:
    """The workspace of the job: found from the job file's folder first, then from here."""
    from runctl.config.workspace import load_workspace
    from runctl.ops.session import Session

    return Session(load_workspace(Path(job_file).resolve().parent, None, Path.cwd()))


def _resolve(session: Any, ref: str, refresh: bool = True) -> Any:
    from runctl.ops.runs import refresh as do_refresh

    record = session.store.resolve(ref)
    return do_refresh(session, record) if refresh else record


_UNPRINTABLE = None


def safe(text: Any) -> str:
    """``text`` with control characters escaped (\\x1b, \\n, ...): names, tags and errors come
    from jobs, and a job must not clear the screen or retitle the terminal."""
    text = str(text)
    if text.isprintable():  # the common case, checked in C
        return text
    global _UNPRINTABLE
    if _UNPRINTABLE is None:
        import re

        _UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def _print_json(data: Any) -> None:
    sys.stdout.write(_json_text(data) + "\n")


def _json_text(data: Any, indent: str = "") -> str:
    """JSON laid out for reading: objects and lists of objects indented by 2, a list of
    plain values on one line. (json.dumps with indent= leaves its C encoder for a Python one:
    a million logged values took 1.1 s to print that way; a list on one line goes through
    the C encoder.)"""
    inner = indent + "  "
    if isinstance(data, dict):
        if not data:
            return "{}"
        items = (f"{inner}{json.dumps(str(k))}: {_json_text(v, inner)}" for k, v in data.items())
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(data, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in data):
        return "[\n" + ",\n".join(inner + _json_text(v, inner) for v in data) + "\n" + indent + "]"
    return json.dumps(data, allow_nan=True)


def _stdout_bytes() -> Any:
    return sys.stdout.buffer


@app.command(short_help='Submit a job; print its run id.')
def submit(
    job_file: Path = typer.Argument(..., metavar="JOB", help="The job file (a YAML ScriptRunConfig)."),
    compute: Optional[str] = typer.Option(None, "--compute", "-c", metavar="TARGET", help="Compute target (overrides compute_target)."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY.PATH=VALUE", help="Override a field of the job file."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the run; exit with its exit code."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream its output until it ends; exit with its exit code."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the run id."),
    json_: bool = JsonOpt,
    unique: Optional[str] = typer.Option(None, "--unique", metavar="KEY",
                                         help="If an unfinished run holds KEY, print it instead of starting another."),
    sweep: List[str] = typer.Option([], "--sweep", metavar="NAME=V1,V2,...",
                                    help="Run the script once per combination, with --NAME VALUE arguments (repeatable)."),
    max_parallel: Optional[int] = typer.Option(None, "--max-parallel", min=1, metavar="N",
                                               help="With --sweep: at most this many runs at a time."),
) -> None:
    """Submit a job and print its run id (with --sweep: the sweep's parent run)."""
    from runctl.config.jobconfig import load_job
    from runctl.ops import runs
    from runctl.ops.submit import submit as do_submit

    with _session_for_job(job_file) as s:
        sets = list(set_) + ([f"compute_target={compute}"] if compute else [])
        job = load_job(job_file, s.ws, sets)
        for note in job.notes:
            print(safe(f"runctl: {job_file}: {note}"), file=sys.stderr)
        if max_parallel is not None and not sweep:
            raise InputError("--max-parallel: only with --sweep")
        if job.hyperdrive is not None:
            if sweep or unique is not None:
                raise InputError(f"{'--sweep' if sweep else '--unique'}: not with a hyperdrive section "
                                 f"({job_file} tunes with its own parameter_space)")
            from runctl.ops.hyperdrive.tune import submit_tuning

            record, created = submit_tuning(s, job), True
        elif sweep:
            if unique is not None:
                raise InputError("--unique: not with --sweep")
            from runctl.ops.sweep import grid, submit_sweep

            record, created = submit_sweep(s, job, grid(sweep), max_parallel), True
        else:
            try:
                record, created = do_submit(s, job, unique_key=unique)
            except RunctlError as e:
                failed = getattr(e, "run_id", None)  # the run exists (Failed, or pending): scripts get its id
                if failed and (json_ or quiet):
                    if json_:
                        _print_json({**s.store.get(failed).summary(), "created": True})
                    else:
                        print(failed)
                    sys.stdout.flush()
                raise
        if json_:
            _print_json({**record.summary(), "created": created})
        elif quiet:
            print(record.id)
        elif created:
            print(safe(f"Submitted run {record.id} (experiment {record.experiment}, #{record.number}) "
                       f"to {record.compute_target}"))
        else:
            print(safe(f"Run {record.id} holding --unique {unique} is still {record.status}; not starting another"))
        sys.stdout.flush()
        if not created or not (wait or follow):
            return
        if follow:
            with _detachable(record.id):
                record = runs.follow(s, record, _stdout_bytes())
        else:
            with _detachable(record.id):
                record = runs.wait(s, record)
        _report_end(s, record, quiet or json_, show_tail=not follow)
        raise typer.Exit(runs.wait_exit_code(record))


TAIL_LINES = 10


def _report_end(s: Any, record: Any, quiet: bool, show_tail: bool = False) -> None:
    """How the run ended, on stderr; for a failure the job's last lines (its traceback) too,
    unless they were just shown (--follow)."""
    if quiet:
        return
    line = f"Run {record.id} {record.status}"
    if record.exit_code is not None:
        line += f" (exit code {record.exit_code})"
    if record.error and record.status.value != "Completed" and record.error != f"exit code {record.exit_code}":
        line += f": {record.error}"
    print(safe(line), file=sys.stderr)
    if show_tail and record.status.value == "Failed":
        from runctl.ops.sync import store_log_path

        tail = _last_lines(store_log_path(s.store, record.id), TAIL_LINES)
        if tail:
            print(f"The last {len(tail)} lines of its output:", file=sys.stderr)
            for text in tail:
                print(safe(f"  {text}"), file=sys.stderr)
            print(f"(the whole log: runctl logs {record.id})", file=sys.stderr)


def _last_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-n:]


@app.command(short_help="Print a run's output.")
def logs(
    run: str = RunArg,
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the run ends; exit with its exit code."),
    json_: bool = typer.Option(False, "--json", help="Print {log file name: text} as JSON (control characters escaped)."),
) -> None:
    """Print a run's output (stdout and stderr of the script), as the job wrote it."""
    from runctl.ops import runs
    from runctl.ops.sync import store_log_path

    with _session() as s:
        record = _resolve(s, run, refresh=not follow)
        if json_:
            root = s.store.run_dir(record.id)
            _print_json({p.relative_to(root).as_posix(): p.read_bytes().decode("utf-8", "replace")
                         for p in sorted((root / "logs").rglob("*")) if p.is_file()})
            return
        if follow:
            with _detachable(record.id):
                record = runs.follow(s, record, _stdout_bytes())
            raise typer.Exit(runs.wait_exit_code(record))
        path = store_log_path(s.store, record.id)
        # The job's output; a run that never got that far (a failed image build): its other logs.
        paths = [path] if path.exists() else sorted(p for p in (s.store.run_dir(record.id) / "logs").rglob("*")
                                                      if p.is_file() and not p.is_symlink())
        for p in paths:
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    sys.stdout.buffer.write(chunk)


@app.command(short_help="Print a run's status.")
def status(run: str = RunArg, json_: bool = JsonOpt) -> None:
    """Print a run's status (refreshed from its backend)."""
    with _session() as s:
        record = _resolve(s, run)
        if json_:
            _print_json(record.summary())
        else:
            print(record.status.value)


@app.command(short_help='Wait for runs to end; exit with their exit code.')
def wait(
    run: List[str] = typer.Argument(..., metavar="RUN...", help="Run ids, unique prefixes, or @last."),
    timeout: Optional[float] = typer.Option(None, "--timeout", metavar="SECONDS", help="Give up after this long (exit 124)."),
) -> None:
    """Wait for runs to end; exit with the run's exit code (several runs: 0 if all completed,
    else the first failed one's)."""
    from runctl.errors import NotFinished
    from runctl.ops import runs

    with _session() as s:
        records = [_resolve(s, r, refresh=False) for r in run]
        try:
            if len(records) == 1:  # one run: its log bytes reach the store as they come
                with _detachable(records[0].id):
                    records = [runs.wait(s, records[0], timeout_s=timeout)]
            else:
                records = runs.wait_many(s, records, timeout_s=timeout)
        except NotFinished as e:
            print(safe(f"error: {e}"), file=sys.stderr)
            raise typer.Exit(ExitCode.TIMED_OUT) from None
        for r in records:
            _report_end(s, r, quiet=False, show_tail=True)
        codes = [runs.wait_exit_code(r) for r in records]
        raise typer.Exit(next((c for c in codes if c != 0), 0))


@app.command("list", short_help='List runs, newest first.')
def list_(
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", metavar="NAME", help="Only this experiment."),
    status_: Optional[str] = typer.Option(None, "--status", "-s", metavar="STATUS", help="Only runs in this status (e.g. Running)."),
    limit: int = typer.Option(50, "--limit", "-n", min=0, metavar="N", help="At most this many runs, newest first (0: all)."),
    user: Optional[str] = typer.Option(None, "--user", "-u", metavar="NAME", help="Only runs NAME submitted (a team "
                                       "store's database role, else the OS user)."),
    mine: bool = typer.Option(False, "--mine", help="Only runs I submitted."),
    json_: bool = JsonOpt,
) -> None:
    """List runs, newest first."""
    from runctl.errors import InputError
    from runctl.ops.runs import refresh_many
    from runctl.status import RunStatus

    want = None
    if status_ is not None:
        try:
            want = RunStatus.parse(status_)
        except ValueError:
            raise InputError(f"--status {status_!r}: not a run status; use one of "
                             f"{', '.join(s.value for s in RunStatus)}") from None
    with _session() as s:
        def warn(target: str, e: Exception) -> None:
            print(safe(f"warning: runs on {target!r}: status not refreshed: {e}"), file=sys.stderr)

        if mine:
            if user is not None:
                raise InputError("--mine and --user: give one")
            user = s.store.me()
        records = refresh_many(s, s.store.runs(experiment=experiment, status=want, limit=limit or None, user=user), warn)
        if want is not None:
            records = [r for r in records if r.status == want]
        best = {r.id: _best_text(s, r) for r in records if r.kind == "hyperdrive"}
        if json_:
            from runctl.ops.trials import best_run

            _print_json([{**r.summary(), **({"best_run": best_run(s.store, r)} if r.id in best else {})}
                         for r in records])
            return
        if not records:
            filtered = experiment is not None or want is not None or user is not None
            print("no runs match" if filtered else "no runs yet; submit one with `runctl submit JOB.yaml` "
                                                   "(examples/hello/job.yaml is one)", file=sys.stderr)
            return
        rows = [[r.id, r.experiment, str(r.number), r.status.value, r.compute_target or "", r.user or "",
                 _age(r.created_at), "" if r.exit_code is None else str(r.exit_code)] for r in records]
        headers = ["RUN", "EXPERIMENT", "#", "STATUS", "TARGET", "USER", "CREATED", "EXIT"]
        if any(best.values()):  # tuning runs: their best run so far
            headers.append("BEST")
            rows = [[*row, best.get(r.id) or ""] for row, r in zip(rows, records)]
        _table(headers, rows)


def _best_text(s: Any, record: Any) -> str:
    from runctl.ops.trials import best_run

    best = best_run(s.store, record)
    if best is None:
        return ""
    return f"{best['id']} {best['primary_metric']['name']}={best['primary_metric']['value']:g}"


def _age(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _table(headers: list[str], rows: list[list[str]]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(*headers, box=None, header_style="bold")
        for r in rows:
            t.add_row(*(Text(safe(c)) for c in r))  # Text: no markup is interpreted in job data
        Console().print(t)
        return
    rows = [[safe(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    sys.stdout.write("\n".join(out) + "\n")


@app.command(short_help="Show a run's details.")
def show(run: str = RunArg, json_: bool = JsonOpt) -> None:
    """Show a run's details: status, timings, properties, tags, definition, log files."""
    from runctl.ops.runs import details

    with _session() as s:
        d = details(s, _resolve(s, run))
        if json_:
            _print_json(d)
            return
        for k, v in d.items():
            if isinstance(v, dict):
                print(f"{k}:")
                for kk, vv in v.items():
                    print(safe(f"  {kk}: {json.dumps(vv) if isinstance(vv, (dict, list)) else vv}"))
            else:
                print(safe(f"{k}: {v}"))


@app.command(short_help="Print a run's metrics.")
def metrics(
    run: str = RunArg,
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="Only this metric."),
    json_: bool = typer.Option(False, "--json", help="Print the dict run.get_metrics() returns."),
    csv_: bool = typer.Option(False, "--csv", help="Print every logged value as CSV (name,step,value,time)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Include child runs: {run_id: {...}}."),
    system: bool = typer.Option(False, "--system", help="The job's CPU, memory and GPU use (system/*), sampled by "
                                "the launcher, instead of what the script logged."),
    children: bool = typer.Option(False, "--children", help="A tuning run's trials, best first by its primary "
                                  "metric: each child's best and last report and hyperparameters."),
) -> None:
    """Print a run's metrics."""
    from runctl.ops.runs import metrics as get_metrics

    with _session() as s:
        record = _resolve(s, run)
        if children:
            _trials_table(s, record, json_)
            return
        if csv_:
            _metrics_csv(s, record.id, name, system)
            return
        m = get_metrics(s, record, name, system)
        if name is not None and not m and not recursive:
            have = sorted([*get_metrics(s, record), *get_metrics(s, record, system=True)])
            raise InputError(f"run {record.id} has no metric {name!r}; it has: {', '.join(have) or 'none'}")
        if recursive:
            m = {r.id: get_metrics(s, r, name, system) for r in [record, *_descendants(s, record)]}
            m = {k: v for k, v in m.items() if v}
        if json_:
            _print_json(m)
            return
        for k, v in m.items():
            print(safe(f"{k}: {json.dumps(v, allow_nan=True)}"))


@app.command(short_help="Show how two runs differ: code, config, environment, metrics, tags.")
def diff(
    run: str = RunArg,
    other: Optional[str] = typer.Argument(None, metavar="[OTHER]", help="The run to compare with (default: the run "
                                          "RUN was rerun from, else the previous run of its experiment)."),
    json_: bool = typer.Option(False, "--json", help="Print JSON (keys: code, config, environment, metrics, tags)."),
    stat: bool = typer.Option(False, "--stat", help="A summary: what changed, without the file diffs and values."),
) -> None:
    """Show how two runs differ: the code between their snapshots (a unified diff of changed
    text files), the job's fields and arguments, where and how they ran, each metric's last
    value (min and max of series), tags and properties. Colour and a pager on a terminal."""
    from runctl.ops import diff as diffs

    with _session() as s:
        a = _resolve(s, run)
        b = _resolve(s, other) if other is not None else None
        if b is None:
            a, b = diffs.baseline(s, a), a
        d = diffs.diff_runs(s, a, b, texts=not stat)
    if json_:
        _print_json(d)
        return
    tty = sys.stdout.isatty()
    lines = diffs.render(d, safe, stat=stat, color=tty and not os.environ.get("NO_COLOR"))
    _page("\n".join(lines) + "\n", tty)


def _page(text: str, tty: bool) -> None:
    """``text`` through a pager on a terminal when it is longer than the screen (as git does:
    $PAGER, else less -FRX), else straight out."""
    import shutil
    import subprocess

    if tty and text.count("\n") > shutil.get_terminal_size().lines:
        pager = os.environ.get("PAGER") or "less"
        env = {**os.environ, "LESS": os.environ.get("LESS", "FRX")}
        try:
            subprocess.run(pager, shell=True, input=text.encode(), env=env, check=False)
            return
        except OSError:
            pass
    sys.stdout.write(text)


def _trials_table(s: Any, record: Any, json_: bool) -> None:
    from runctl.ops.runs import refresh_many
    from runctl.ops.trials import table, tuning_of

    tuning = tuning_of(record)
    if tuning is None:
        raise InputError(f"run {record.id} is not a tuning run (a job with a hyperdrive section); --children "
                         f"lists a tuning run's trials")
    refresh_many(s, s.store.runs(parent_id=record.id), lambda target, e: None)
    rows = table(s.store, record)
    if json_:
        _print_json(rows)
        return
    if not rows:
        print(f"run {record.id} has no trials yet", file=sys.stderr)
        return
    name = tuning["primary_metric_name"]

    def num(v: Any) -> str:
        return "" if v is None else f"{v:g}"

    _table(["RUN", "STATUS", f"BEST {name}", "LAST", "REPORTS", "HYPERPARAMETERS"],
           [[r["id"], r["status"], num(r["best"]), num(r["last"]), str(r["reports"]),
             " ".join(f"{k}={format(v, '.6g') if isinstance(v, float) else v}" for k, v in r["hyperparameters"].items())]
            for r in rows])


def _descendants(s: Any, record: Any) -> list[Any]:
    out = []
    for child in reversed(s.store.runs(parent_id=record.id)):
        out += [child, *_descendants(s, child)]
    return out


def _metrics_csv(s: Any, run_id: str, name: str | None, system: bool = False) -> None:
    import csv

    from runctl.job.sysmetrics import is_system

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["name", "step", "value", "time"])
    for row in s.store.metric_rows(run_id):
        if name is not None and row["name"] != name or name is None and is_system(row["name"]) != system:
            continue
        value = json.loads(row["value"])
        if row["kind"] in ("row", "table"):
            for col, vals in value.items():
                for v in vals if row["kind"] == "table" else [vals]:
                    w.writerow([f"{row['name']}.{col}", row["step"], v, row["ts"]])
        elif row["kind"] == "list":
            for v in value:
                w.writerow([row["name"], row["step"], v, row["ts"]])
        else:
            w.writerow([row["name"], row["step"], value, row["ts"]])


@app.command(short_help='Cancel a run.')
def cancel(run: str = RunArg) -> None:
    """Cancel a run: SIGTERM, then SIGKILL after the grace period."""
    from runctl.ops.runs import cancel as do_cancel

    with _session() as s:
        record = do_cancel(s, _resolve(s, run))
        print(safe(f"{record.id} {record.status.value}"))


@app.command(short_help="Copy a finished run's outputs.")
def outputs(
    run: str = RunArg,
    dest: Path = typer.Argument(Path("."), metavar="[DEST]", help="Directory to copy the outputs into."),
) -> None:
    """Copy a finished run's outputs into DEST."""
    from runctl.ops.runs import copy_outputs

    with _session() as s:
        record = _resolve(s, run)
        copied = copy_outputs(s, record, dest)
        for p in copied:
            print(safe(p))
        if not copied:
            print(f"run {record.id} has no outputs", file=sys.stderr)


@app.command(short_help="Submit a run's exact snapshot and settings again.")
def rerun(
    run: str = RunArg,
    compute: Optional[str] = typer.Option(None, "--compute", "-c", metavar="TARGET", help="Run it on another compute target."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the run; exit with its exit code."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream its output until it ends; exit with its exit code."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the new run's id."),
    json_: bool = JsonOpt,
) -> None:
    """Submit the exact snapshot and settings of a run again (with the workspace config it
    was submitted with)."""
    from runctl.ops import runs
    from runctl.ops.submit import rerun as do_rerun

    with _session() as first:
        record = _resolve(first, run, refresh=False)
        s = _session_submitted_from(first, record)
        if record.kind == "hyperdrive":
            from runctl.ops.hyperdrive.tune import rerun_tuning

            new = rerun_tuning(s, record, compute=compute)
        else:
            new = do_rerun(s, record, compute=compute)
        if json_:
            _print_json({**new.summary(), "rerun_of": record.id})
        else:
            print(new.id if quiet else safe(f"Submitted run {new.id} (rerun of {record.id}) to {new.compute_target}"))
        sys.stdout.flush()
        if wait or follow:
            with _detachable(new.id):
                new = runs.follow(s, new, _stdout_bytes()) if follow else runs.wait(s, new)
            _report_end(s, new, quiet or json_, show_tail=not follow)
            raise typer.Exit(runs.wait_exit_code(new))


def _session_submitted_from(session: Any, record: Any) -> Any:
    """A rerun uses the workspace config its run was submitted with (its compute targets),
    with this store; if that config is gone, it says so and uses the one found here."""
    from runctl.config.workspace import load_workspace
    from runctl.ops.session import Session

    recorded = (record.spec or {}).get("workspace_config")
    if not recorded or str(session.ws.config_path) == recorded:
        return session
    if not Path(recorded).is_file():
        print(safe(f"runctl: the workspace config run {record.id} was submitted with ({recorded}) is gone; using "
                   f"{session.ws.config_path or 'the defaults'}"), file=sys.stderr)
        return session
    ws = load_workspace(None, Path(recorded))
    ws.store_dir = session.ws.store_dir
    return Session(ws)


@app.command(short_help='Check a job file without submitting it.')
def validate(
    job_file: Path = typer.Argument(..., metavar="JOB", help="The job file to check."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY.PATH=VALUE", help="Override a field of the job file."),
    json_: bool = JsonOpt,
) -> None:
    """Check a job file without submitting; show what its snapshot would hold."""
    from runctl.config.jobconfig import load_job
    from runctl.ops.submit import check, list_job_source
    from runctl.store.snapshot import human_bytes

    with _session_for_job(job_file) as s:
        job = load_job(job_file, s.ws, list(set_))
        check(s, job)
        listing = list_job_source(s, job.source_directory, job.script)
    summary = {
        "job_file": str(job_file), "valid": True, "experiment": job.experiment,
        "compute_target": job.compute_target, "source_directory": str(job.source_directory),
        "snapshot": {"files": len(listing.entries), "bytes": listing.total_bytes,
                     "largest": [{"path": e.path, "bytes": e.size} for e in listing.largest(5)]},
    }
    if json_:
        _print_json(summary)
        return
    print(f"{job_file}: valid")
    print(f"  experiment: {job.experiment}   compute_target: {job.compute_target}")
    print(f"  snapshot: {len(listing.entries)} files, {human_bytes(listing.total_bytes)} from {job.source_directory}")
    for e in listing.largest(5):
        print(safe(f"    {human_bytes(e.size):>10}  {e.path}"))


@app.command(short_help='Serve the portal: runs, live charts, logs.')
def ui(
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to listen on (not loopback: a token is required)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, metavar="PORT", help="Port (a free one if it is taken)."),
    open_: bool = typer.Option(False, "--open", help="Open the page in a browser."),
    token: Optional[str] = typer.Option(None, "--token", envvar="RUNCTL_UI_TOKEN", metavar="TOKEN",
                                        help="Require this token (default: a new one when not on loopback)."),
) -> None:
    """Serve the portal: runs, live metric charts and logs in a browser, until Ctrl-C."""
    from runctl.ops.session import Session
    from runctl.web.server import serve

    with _session() as s:
        store_dir, ws = s.store.dir, s.ws

    def announce(url: str) -> None:
        print(url, flush=True)
        print("runctl: serving the portal; Ctrl-C stops it", file=sys.stderr, flush=True)

    serve(lambda: Session(ws), store_dir, host, port, token, open_, announce)


@app.command(short_help='List the models runs registered.')
def models(
    name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="Only this model's versions."),
    json_: bool = JsonOpt,
) -> None:
    """Models that runs registered (run.register_model), newest version first."""
    from runctl.store.sqlite import _iso

    with _session() as s:
        rows = s.store.models(name)
        if json_:
            _print_json([{**r, "created_at": _iso(r["created_at"])} for r in rows])
            return
        if not rows:
            print("no models registered" + (f" as {name!r}" if name else "") + "; a script registers one with "
                  "run.register_model(NAME, model_path='outputs/...')", file=sys.stderr)
            return
        for r in rows:
            tags = ", ".join(f"{k}={v}" for k, v in r["tags"].items())
            print(safe(f"{r['name']}:{r['version']}  run {r['run_id']}  {r['path'] or ''}  {tags}".rstrip()))


@app.command(short_help='Turn a v1 run configuration into a job file.')
def convert(
    config: Path = typer.Argument(..., metavar="FILE", help="An Azure ML v1 run configuration (.runconfig, run_config.yml)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="JOB",
                                          help="Write the job file here (default: print it)."),
) -> None:
    """Turn an Azure ML v1 run configuration into a runctl job file, saying what was left out."""
    import yaml

    from runctl.config.v1config import convert as do_convert

    job, notes, _ = do_convert(config)
    if output is not None and config.resolve().parent != output.resolve().parent:
        src = Path(job["source_directory"])
        job["source_directory"] = os.path.relpath(src, output.resolve().parent)
    elif output is not None:
        job["source_directory"] = os.path.relpath(job["source_directory"], output.resolve().parent)
    text = yaml.safe_dump(job, sort_keys=False, default_flow_style=None)
    for note in notes:
        print(safe(f"runctl: {config}: {note}"), file=sys.stderr)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        print(f"wrote {output}", file=sys.stderr)


env_app = typer.Typer(help="The Python environments runctl built for jobs on each target's hosts.",
                       no_args_is_help=True)
app.add_typer(env_app, name="env", short_help="List and remove jobs' cached Python environments.")


@env_app.command("list")
def env_list(
    target: Optional[str] = typer.Argument(None, help="Only this compute target."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Environments built for environment.python.pip_packages: per target and host, their
    size, when a run last used them, whether a job runs from one now, and the runs of this
    store that ran in them."""
    import time

    with _session() as s:
        names = [target] if target else sorted(s.ws.targets)
        rows: list[dict[str, Any]] = []
        records = {r.id: (s.store.properties(r.id).get("runctl.environment") or "")
                   for r in s.store.runs(include_children=True) if r.compute_target in names}
        for name in names:
            envs = s.backend(name).environments()
            for e in envs or []:
                runs = [rid for rid, rec in records.items() if e["path"] + "/" in rec]
                rows.append({"target": name, **e, "runs": len(runs)})
    if json_:
        _print_json(rows)
        return
    if not rows:
        print("no environments built (jobs with environment.python.pip_packages make them)", file=sys.stderr)
        return
    _table(["TARGET", "HOST", "KEY", "SIZE", "LAST USED", "RUNS", "IN USE", "PACKAGES"],
           [[r["target"], r["host"], r["key"], f"{r['bytes'] / 1e6:.1f} MB",
             time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])), str(r["runs"]),
             "yes" if r["in_use"] else "", ", ".join(r["requirements"])[:60]] for r in rows])


@env_app.command("rm")
def env_rm(
    target: str = typer.Argument(..., help="The compute target."),
    key: str = typer.Argument(..., help="The environment's key (`runctl env list`)."),
) -> None:
    """Remove one environment from the target's hosts (never one a job runs from now: the
    next run that needs it builds it again)."""
    with _session() as s:
        removed = s.backend(target).remove_environments(key)
    if not removed:
        raise InputError(f"no environment {key!r} removed on target {target!r}: none by that key, or a job runs "
                         f"from it or builds it now (`runctl env list {target}`)")
    for where, size in removed:
        print(safe(f"removed {where} ({size / 1e6:.1f} MB)"))


store_app = typer.Typer(help="The team store: one run history for a team, on PostgreSQL.", no_args_is_help=True)
app.add_typer(store_app, name="store", short_help="Set up the team store (PostgreSQL).")


@store_app.command("init")
def store_init() -> None:
    """Create or upgrade the team store's schema, its roles (runctl_users, runctl_admin) and
    the policies by which the database decides who may change a run. Run it once, as a role
    that may create tables and roles; again to upgrade (it changes nothing when up to date)."""
    from runctl.config.workspace import load_workspace

    ws = load_workspace()
    if ws.store_url is None:
        raise InputError("no team store is configured: set `store: postgresql://HOST:PORT/DATABASE` in "
                         ".runctl/config.yaml (or RUNCTL_STORE) first")
    try:
        import psycopg
    except ImportError:
        raise InputError("the team store needs psycopg: pip install 'runctl[team]'") from None
    from runctl.store.pgschema import init
    from runctl.store.postgres import connect, redacted

    with connect(ws.store_url) as conn:
        try:
            print(safe(f"{redacted(ws.store_url)}: {init(conn)}"))
        except psycopg.errors.InsufficientPrivilege as e:
            raise InputError(f"{redacted(ws.store_url)}: {str(e).strip()}; run `runctl store init` as a role that "
                             f"may create tables and roles (the database's owner, with CREATEROLE)") from None
        except RuntimeError as e:
            raise InputError(f"{redacted(ws.store_url)}: {e}; install the runctl your team uses") from None


@store_app.command("push")
def store_push(
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", metavar="NAME", help="Only this experiment."),
    json_: bool = JsonOpt,
) -> None:
    """Copy this machine's runs into the team store (records, metrics, logs, outputs, snapshots).
    A second push copies nothing; a push killed midway is finished by the next."""
    from runctl.ops.push import push

    with _session() as s:
        done = push(s, experiment)
        if json_:
            _print_json({"copied": done.copied, "already_there": done.present, "unfinished": done.unfinished,
                         "values": done.values})
            return
        print(safe(f"pushed {len(done.copied)} run(s) ({done.values} metric rows); {len(done.present)} already in the "
                   f"team store"))
        if done.unfinished:
            print(safe(f"not pushed, unfinished: {', '.join(done.unfinished)} (wait for them, then push again)"),
                  file=sys.stderr)


shim_app = typer.Typer(help="Make `from azureml.core import Run` work outside runctl jobs (no Azure SDK needed).",
                       no_args_is_help=True)
app.add_typer(shim_app, name="shim", short_help="Make azureml.core importable outside jobs.")


@shim_app.command("install")
def shim_install(python: Optional[str] = typer.Option(None, "--python", metavar="PATH",
                                                     help="That environment's Python (default: runctl's own).")) -> None:
    """Let v1 scripts run with plain `python` in an environment: `Run.get_context()` is then
    an offline run recorded in runctl's store. A real azureml-core there always wins."""
    from runctl.ops.shimpath import install

    print(f"installed {install(python)}")


@shim_app.command("uninstall")
def shim_uninstall(python: Optional[str] = typer.Option(None, "--python", metavar="PATH",
                                                       help="That environment's Python (default: runctl's own).")) -> None:
    """Undo `runctl shim install` in an environment."""
    from runctl.ops.shimpath import uninstall

    removed = uninstall(python)
    print(f"removed {removed}" if removed else "not installed there; nothing to do")


@app.command(short_help='Remove what runctl no longer needs.')
def gc(
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only print what would be removed."),
    older_than: float = typer.Option(7.0, "--older-than", metavar="DAYS", min=0,
                                     help="Remove kept run directories of runs finished this many days ago."),
) -> None:
    """Remove what runctl no longer needs: leftovers of killed submits, old run directories,
    snapshots and objects no run refers to."""
    import math

    from runctl.ops import gc as do_gc
    from runctl.store.snapshot import human_bytes

    if not math.isfinite(older_than):
        raise InputError(f"--older-than must be a finite number of days, not {older_than} (for example --older-than 30)")

    with _session() as s:
        p = do_gc.run(s, older_than, dry_run)
        for path in p.paths:
            print(safe(path))
        for where, _size in p.remote:
            print(safe(where))
        for warning in p.warnings:
            print(safe(f"warning: {warning}"), file=sys.stderr)
        verb = "would free" if dry_run else "freed"
        print(f"{len(p.paths) + len(p.remote)} item(s), {verb} {human_bytes(p.bytes)}", file=sys.stderr)


@compute_app.command("list")
def compute_list(json_: bool = JsonOpt) -> None:
    """List the configured compute targets."""
    from runctl.config.workspace import load_workspace

    ws = load_workspace()
    items = [{"name": t.name, "type": t.type, **t.options} for t in ws.targets.values()]
    if json_:
        _print_json(items)
        return
    _table(["NAME", "TYPE", "OPTIONS"],
           [[i["name"], i["type"], ", ".join(f"{k}={v}" for k, v in i.items() if k not in ("name", "type"))]
            for i in items])


@compute_app.command("check")
def compute_check(name: str = typer.Argument("local", metavar="[TARGET]", help="Compute target name (default: local).")) -> None:
    """Check that a compute target works from here."""
    from runctl.errors import InputError

    with _session() as s:
        if name not in s.ws.targets:
            raise InputError(f"unknown compute target {name!r}; known: {', '.join(sorted(s.ws.targets))}")
        lines = s.backend(name).check()
        print(f"{name}: ok")
        for line in lines:
            print(f"  {line}")


@compute_app.command("trust", short_help="Trust the host keys of a target's SSH hosts.")
def compute_trust(name: str = typer.Argument(..., metavar="TARGET",
                                             help="A target that connects over SSH (ssh; slurm with a login node).")) -> None:
    """Trust the current host key of every host a target connects to over SSH (an ssh target's
    hosts, a Slurm target's login node): prints each fingerprint and adds it to known_hosts.
    Check the fingerprint with the host's administrator first: runctl never trusts on its own."""
    from runctl.errors import InputError

    with _session() as s:
        if name not in s.ws.targets:
            raise InputError(f"unknown compute target {name!r}; see `runctl compute list`")
        lines = s.backend(name).trust_hosts()
        if lines is None:
            raise InputError(f"compute target {name!r} connects to no host over SSH: there is no host key to trust")
        for line in lines:
            print(line)


def main() -> None:
    try:
        app()
    except RunctlError as e:
        if os.environ.get("RUNCTL_DEBUG"):
            raise
        for line in e.lines() if isinstance(e, ConfigError) else [str(e)]:  # a file's problems, a line each
            first, *more = line.split("\n")  # (a build log's last lines: as lines, each escaped)
            print(safe(f"error: {first}"), file=sys.stderr)
            for extra in more:
                print(safe(extra), file=sys.stderr)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(ExitCode.OK)


if __name__ == "__main__":
    main()
