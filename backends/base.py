"""The backend contract: how a run directory reaches some compute, and how core reads it back.

Core (submit, sync, wait, cancel) calls a backend; a backend never polls, waits, retries
or touches the store. Its whole job is the run directory contract (docs/architecture.md,
"Writing a backend"): say where RUN_DIR will be (``plan``), give core a ``transport`` to
stage it, start the launcher there (``submit``), say what state jobs are in, read bytes of
RUN_DIR files from an offset without following links, and stop a job. Handles are plain
data that round-trip through the store; live clients belong on the backend object, which
core closes with ``close()`` when done. The launcher's side of the protocol is
``runctl.job.protocol``; staging is ``backends/transport.py``.

Errors (runctl.errors), converted at the edge from the backend's own library:
InputError (exit 2) for what the target cannot do, raised before a run exists by
``check_job``; StartError (exit 3) when ``submit`` could not start the launcher;
BackendUnreachable (exit 4) from any method when the compute side does not answer.
"""

from __future__ import annotations

import abc
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from runctl.status import RunStatus

if TYPE_CHECKING:
    from runctl.backends.transport import Transport


@dataclass(frozen=True)
class Handle:
    """Where a run lives on its backend. Plain data: stored as JSON with the run."""

    backend: str
    native_id: str
    run_dir: str
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Recorded by ``plan()`` before the job was started: no native id yet."""
        return not self.native_id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Handle:
        return cls(**d)


@dataclass(frozen=True)
class RunFile:
    """One name under RUN_DIR, as ``list_files`` reports it. Only ``kind == "file"`` (a regular
    file) is ever read; anything else a job made there is skipped, and core records that."""

    path: str  # relative to RUN_DIR, "/"-separated
    size: int
    kind: str = "file"  # or "symlink", "fifo", "socket", "device", "deep" (past the depth limit), "hardlink" (a second name)


@dataclass(frozen=True)
class JobState:
    """A backend's answer to ``status()``, already mapped to a RunStatus."""

    status: RunStatus
    exit_code: int | None = None
    error: str | None = None
    host: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    warning: str | None = None  # what was wrong with the compute side's record (core keeps it with the run)


@dataclass(frozen=True)
class LaunchSpec:
    """What core asks a backend to run. ``argv`` runs with cwd RUN_DIR/code."""

    run_id: str
    experiment: str
    argv: list[str]
    env: dict[str, str]
    timeout_s: int | None
    grace_s: float
    snapshot_id: str
    resources: dict[str, Any] = field(default_factory=dict)  # parsed: cpus (float), memory (bytes), gpus
    environment: dict[str, Any] = field(default_factory=dict)
    node_count: int = 1
    distributed: dict[str, Any] = field(default_factory=dict)  # the job's distributed_job_config
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)  # never written to disk by runctl
    code_files: tuple[tuple[str, str], ...] = ()  # (path under code/, digest): e.g. an image build's cache key
    # What defines the job's Python environment, which the launcher builds on the compute host
    # (runctl/job/pyenv.py): {"base", "requirements", "installer_options"}; None: none to build.
    python_env: dict[str, Any] | None = None
    system_metrics_interval_s: float = 10.0  # the launcher samples the job's CPU, memory, GPUs (0: never)

    def launcher_spec(self) -> dict[str, Any]:
        """The launcher's spec.json (the job environment goes in here; ``secret_env`` never does:
        backends hand it to the launcher on its standard input, ``--secrets-stdin``)."""
        return {"run_id": self.run_id, "experiment": self.experiment, "argv": self.argv, "env": self.env,
                "cwd": "code", "timeout_s": self.timeout_s, "grace_s": self.grace_s,
                "system_metrics_interval_s": self.system_metrics_interval_s,
                **({"python_env": self.python_env} if self.python_env else {})}


@dataclass(frozen=True)
class Services:
    """What core lends a backend, in place of the store's directory (whose layout only the
    store knows):

    - ``objects``: the object cache on this machine, files by content (read it, never write
      it); ``LocalTransport(services.objects)`` stages RUN_DIRs on this machine from it;
    - ``work_root``: where RUN_DIRs on this machine go when the target names no work_dir;
    - ``state_dir``: a private folder for this backend type's own small state;
    - ``keep_out``: folders a job must never be handed (read-write mounts): the store's.
    """

    objects: Path
    work_root: Path
    state_dir: Path
    keep_out: tuple[Path, ...] = ()


class Backend(abc.ABC):
    """One configured compute target. ``options`` are its fields from the workspace config."""

    name: str = "?"
    max_nodes: int = 1  # more needs a backend that can place processes on several machines
    poll_interval_s: float = 0.05  # the shortest interval at which core asks for status (a Slurm controller wants seconds)
    # The target's options in the workspace config, as JSON Schema "properties" (core validates
    # them with file:line:col errors and parses cpus/memory/gpus before a backend sees them).
    options_schema: ClassVar[dict[str, Any]] = {
        "cancel_grace_s": {"type": "number", "minimum": 0, "description": "SIGTERM-to-SIGKILL grace (default 10)"},
        "env_root": {"type": "string", "minLength": 1,
                     "description": "where jobs' Python environments are built on the target's hosts "
                                    "(default ~/.cache/runctl/envs; on Slurm, a filesystem the nodes share)"},
        "python_packages": {
            "type": "object", "additionalProperties": False,
            "description": "where a job's environment.python packages come from (hosts without internet)",
            "properties": {
                "index_url": {"type": "string", "minLength": 1},
                "extra_index_urls": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "find_links": {"type": "array", "items": {"type": "string", "minLength": 1},
                               "description": "folders of wheels (a wheelhouse) or pages of links"},
                "no_index": {"type": "boolean"},
            },
        },
    }
    # A backend that installs a job's environment.python packages itself (into an image, say);
    # else the launcher builds a virtual environment with them on the compute host.
    installs_python_packages: ClassVar[bool] = False
    runs_images: ClassVar[bool] = False  # environment.docker (an image, a Dockerfile) means something here

    def __init__(self, target: str, options: dict[str, Any], services: Services) -> None:
        self.target = target
        self.options = options
        self.services = services
        # Core sets this before ``plan``: a backend that must wait for capacity before it can
        # place a run (free GPUs, a slot) calls it once with why, and core shows the run Queued.
        self.on_queued: Callable[[LaunchSpec, str], None] = lambda spec, why: None

    def check_job(self, spec: LaunchSpec) -> None:  # noqa: B027 - optional hook
        """Raise InputError before any run exists if this target cannot run ``spec``."""

    def default_interpreter(self) -> str:
        return "python3"

    @abc.abstractmethod
    def plan(self, spec: LaunchSpec) -> Handle:
        """Where the run will live, decided before anything exists (no native id yet). Core
        records it before calling ``submit``, so a submitter killed at any instant leaves a
        run that ``status`` can find again. A backend that waits here for capacity says so
        through ``self.on_queued`` first."""

    @abc.abstractmethod
    def transport(self, handle: Handle) -> Transport:
        """How core stages RUN_DIR on the compute side ``handle`` (from ``plan``) points at."""

    @abc.abstractmethod
    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        """Start the launcher in the RUN_DIR core has staged at ``handle.run_dir``; return at
        once with the handle completed (its native id). Raise InputError for a request the
        compute side refuses, StartError if the launcher could not start, BackendUnreachable
        if the compute side does not answer."""

    def begin(self, spec: LaunchSpec, handle: Handle) -> None:  # noqa: B027 - optional hook
        """Optional: start what is slow to start (a container) while core stages RUN_DIR, the
        job itself waiting for ``submit``. Called once the plan is recorded; it may make
        RUN_DIR, empty, for staging to fill. Core calls ``abort`` instead of ``submit`` if
        staging fails."""

    def abort(self, handle: Handle) -> None:  # noqa: B027 - optional hook
        """Undo ``begin`` (staging failed): whatever it started must never run the job."""

    supports_arrays: bool = False  # True: ``submit_array`` starts many staged runs as one job

    def submit_array(self, runs: list[tuple[LaunchSpec, Handle]], max_parallel: int | None) -> list[Handle]:
        """Start many runs core has staged (a sweep's, run ids ``<sweep id>_<i>`` in order) as
        ONE job of the compute side (a Slurm job array), at most ``max_parallel`` at a time;
        their handles, in order. Only for backends with ``supports_arrays``."""
        raise NotImplementedError

    @abc.abstractmethod
    def status(self, handle: Handle) -> JobState:
        """The job's state now, mapped to a RunStatus in ONE place in the backend.

        Core passes a ``pending`` handle only once the process that was submitting it is
        gone: the backend then adopts the job if it started, and otherwise makes sure that
        it never will (the launcher protocol's "abandoned" record) and reports FAILED."""

    def wait_for_change(self, handle: Handle, timeout_s: float) -> None:
        """Sleep up to ``timeout_s`` between two looks at a run, returning early when the
        backend can tell that the run started, printed its first output or ended (a
        follower then shows it at once). The default just sleeps."""
        time.sleep(timeout_s)

    def status_many(self, handles: list[Handle]) -> list[JobState]:
        """``status`` of many runs in one call (e.g. one ``squeue`` or one container listing), in
        the order given. Core refreshes all unfinished runs of a backend through this, once per
        ``poll_interval_s``. The default asks one by one."""
        return [self.status(h) for h in handles]

    @abc.abstractmethod
    def read(self, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of RUN_DIR/relpath from ``offset``; b"" if absent, at the end, or
        not a regular file reached without links (a job's symlink or FIFO is never read)."""

    @abc.abstractmethod
    def list_files(self, handle: Handle, reldir: str) -> list[RunFile]:
        """Every name under RUN_DIR/reldir, never following a link (not even reldir itself):
        regular files, and whatever else is there with its kind, so core can record the skip."""

    @abc.abstractmethod
    def cancel(self, handle: Handle) -> None:
        """Ask the launcher to stop the job (SIGTERM, then SIGKILL after its grace period) and
        write the protocol's cancel marker. Idempotent, and valid in any state: on a run whose
        launcher is gone it stops whatever of the run still runs; on a pending handle it makes
        sure the job never starts."""

    def move_file(self, handle: Handle, relpath: str, dest: Path) -> bool:
        """Move regular file RUN_DIR/relpath to ``dest`` when both are on this filesystem (a
        rename, however big the file), never through a link; False means core copies it."""
        return False

    def release(self, handle: Handle, state: JobState) -> None:  # noqa: B027 - optional hook
        """Called once the run is final and fully synced: free what the job held (e.g. remove a
        container, drop RUN_DIR). Idempotent."""

    def gc(self, finished: list[Handle], older_than_s: float, dry_run: bool) -> list[tuple[str, int]]:
        """`runctl gc` on the compute side: remove the run directories of ``finished`` (runs the
        store holds whole) and caches unused for ``older_than_s``; what was (or, with
        ``dry_run``, would be) removed, as (where, bytes). A backend that declares a
        ``local_work_dir`` leaves its run directories to core (the default: nothing)."""
        return []

    def local_work_dir(self) -> Path | None:
        """Where this target makes run directories on this machine, for core's `runctl gc` to
        collect (only folders a run of the store recorded); None: the compute side keeps its
        own copies and collects them in ``gc``."""
        return None

    def environments(self) -> list[dict[str, Any]] | None:
        """The Python environments built for jobs on this target's hosts (runctl/job/pyenv.py's
        inventory, each with its ``host``); None: this target builds none (images instead)."""
        return None

    def remove_environments(self, key: str | None, older_than_s: float | None = None,
                            dry_run: bool = False) -> list[tuple[str, int]]:
        """Remove environment ``key`` (None: every unused one older than ``older_than_s``),
        never one a job runs from or a build holds; [(host:path, bytes)] removed."""
        return []

    def trust_hosts(self) -> list[str] | None:
        """`runctl compute trust`: add the current host key of every host this target connects
        to over SSH to its known_hosts (never over a changed one); a line per host. None: this
        target connects to no such host."""
        return None

    def check(self) -> list[str]:
        """Lines for ``runctl compute check``; raise BackendUnreachable if it cannot work."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and clients."""
