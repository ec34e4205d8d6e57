"""The SSH backend: runs on a host reached by SSH, with nothing installed there but Python.

paramiko, with ~/.ssh/config aliases (HostName, User, Port, IdentityFile, ProxyJump),
ssh-agent and key files, and known_hosts verification that never auto-accepts: an
unknown or changed host key is an error showing the fingerprint and how to trust it
(``runctl compute trust TARGET``). Files go through SFTP into a content-addressed object
cache under the remote work_dir; everything else (materialising RUN_DIR, reading its
files without following links, the launcher lock, cancel) is one request to runctl's
stdlib agent (runctl/remote_agent.py), shipped once per host and version.
"""

from __future__ import annotations

import posixpath
import time
from typing import Any, ClassVar

from runctl.backends.base import Backend, Handle, JobState, LaunchSpec, RunFile, Services
from runctl.backends.hostdir import live_state, times
from runctl.backends.sshlink import (  # noqa: F401  (agent_files: what the agent is made of)
    SSH_OPTIONS,
    HostLink,
    HostSettings,
    SSHTransport,
    Unanswered,
    agent_files,
    trust_host,
)
from runctl.backends.transport import Transport
from runctl.errors import BackendUnreachable, InputError, RunctlError, StartError
from runctl.job import protocol as P
from runctl.status import RunStatus

INVENTORY_FRESH_S = 5.0  # the GPU list from check_job serves placement this long (busy is asked anew)


class SSHBackend(Backend):
    name = "ssh"
    poll_interval_s = 0.1  # one request on a connection kept open: cheap for the host
    options_schema: ClassVar[dict[str, Any]] = {
        **Backend.options_schema,
        "hosts": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        "python": {"type": "string", "minLength": 1, "description": "the remote Python (default python3)"},
        "work_dir": {"type": "string", "minLength": 1, "description": "remote; default ~/.runctl"},
        **SSH_OPTIONS,
        "keep_run_dirs": {"enum": ["failed", "all", "none"]},
        "gpus_per_run": {"type": "integer", "minimum": 0, "description": "GPUs a run gets unless resources.gpus says"},
        "nvidia_smi": {"type": "string", "minLength": 1, "description": "nvidia-smi on the hosts (default: on PATH)"},
        "gpu_busy_memory_mib": {"type": "number", "minimum": 0,
                                "description": "a GPU with more memory in use counts as busy (default 1024)"},
        "spare_copy": {"type": "boolean", "description": "keep one ready copy of the last code on each host, so "
                       "the next run of it starts without copying (default true; costs its size on disk)"},
        "queue_timeout_s": {"type": "number", "minimum": 0,
                            "description": "how long a submit waits for free GPUs (default 0: fail at once)"},
    }

    def __init__(self, target: str, options: dict[str, Any], services: Services) -> None:
        super().__init__(target, options, services)
        self.links = {alias: HostLink(alias, options) for alias in (options.get("hosts") or [target])}
        self.unanswered = Unanswered(services.state_dir / "unanswered.json", float(options.get("retry_unanswered_s", 30)))
        self.python = options.get("python", "python3")
        self._chosen: dict[str, tuple[HostLink, list[int]]] = {}  # run id -> (host, GPUs) placement chose

    def link(self, handle: Handle) -> HostLink:
        return self.links.get(handle.host or "") or next(iter(self.links.values()))

    def trust_hosts(self) -> list[str]:
        """`runctl compute trust`: every host's current key into known_hosts, if not there."""
        return [f"{link.alias}: {trust_host(link.settings)}" for link in self.links.values()]

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    # -- the contract ------------------------------------------------------------------------
    def default_interpreter(self) -> str:
        return self.python

    def check_job(self, spec: LaunchSpec) -> None:
        """Before any run exists: connect (verifying host keys), and refuse a GPU count that no
        host has at all (how many are free is placement's business, in ``plan``)."""
        want = self.gpus_wanted(spec)
        errors, most = [], 0
        for link in self.links.values():
            try:
                _ = link.work_dir
                if want == 0:
                    link.ensure_agent()  # (staging needs it next): a wrong python is bad input now
                    return
                gpus = link.agent({"op": "inventory", "nvidia_smi": self.options.get("nvidia_smi", "nvidia-smi")})["gpus"]
                link.inventory = (time.monotonic(), gpus)  # placement reuses it a moment later
            except BackendUnreachable as e:
                errors.append(str(e))
                continue
            most = max(most, len(gpus))
            if len(gpus) >= want:
                return
        if errors and not most:
            raise BackendUnreachable("no host of this target answers: " + "; ".join(errors))
        raise InputError(f"resources.gpus: {want}, but no host of target {self.target!r} has that many GPUs "
                         f"(the most is {most}); ask for fewer, or add a host")

    def gpus_wanted(self, spec: LaunchSpec) -> int:
        gpus = (spec.resources or {}).get("gpus")
        if isinstance(gpus, int):
            return gpus
        if isinstance(gpus, list):
            return len(gpus)
        return int(self.options.get("gpus_per_run", 0))

    def _pick(self, spec: LaunchSpec) -> tuple[HostLink, list[int]]:
        """A host that answers and, if the run wants GPUs, has that many free (no process on
        them, no live run holding them): reserved there under a host-wide lock, so concurrent
        submits get disjoint GPUs. With none free, wait up to queue_timeout_s, else fail."""
        if spec.run_id in self._chosen:
            return self._chosen[spec.run_id]
        want = self.gpus_wanted(spec)
        deadline = time.monotonic() + float(self.options.get("queue_timeout_s", 0))
        queued = False
        while True:
            errors, seen = [], []
            for link in self.links.values():
                try:
                    run_dir = posixpath.join(link.work_dir, spec.run_id)
                    if want == 0:
                        self._chosen[spec.run_id] = (link, [])
                        return link, []
                    taken, inventory = link.inventory
                    got = link.agent({"op": "reserve", "work_dir": link.work_dir, "run_dir": run_dir, "count": want,
                                      "nvidia_smi": self.options.get("nvidia_smi", "nvidia-smi"),
                                      "busy_mib": self.options.get("gpu_busy_memory_mib", 1024),
                                      "inventory": inventory if time.monotonic() - taken < INVENTORY_FRESH_S else None})
                except BackendUnreachable as e:
                    errors.append(str(e))
                    continue
                if got["reserved"] is not None:
                    self._chosen[spec.run_id] = (link, got["reserved"])
                    return link, got["reserved"]
                seen.append(f"{link.alias}: {got['free']} of {got['total']} free")
            if not seen:
                raise BackendUnreachable("no host of this target answers: " + "; ".join(errors))
            if time.monotonic() >= deadline:
                raise StartError(f"no host has {want} free GPU(s) ({'; '.join(seen)}); wait for a run to end, "
                                 f"or set queue_timeout_s on the target to wait for them")
            if not queued:
                queued = True
                self.on_queued(spec, f"no host has {want} free GPU(s) ({'; '.join(seen)}); waiting up to "
                                     f"{self.options.get('queue_timeout_s', 0):g} s (queue_timeout_s) for them")
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def plan(self, spec: LaunchSpec) -> Handle:
        link, gpus = self._pick(spec)
        return Handle(self.name, "", posixpath.join(link.work_dir, spec.run_id), host=link.alias,
                      extra={"gpus": gpus} if gpus else {})

    def transport(self, handle: Handle) -> Transport:
        return SSHTransport(self.link(handle))

    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        link = self.link(handle)
        variables = dict(spec.secret_env)  # launch-time variables travel with the secrets, in the request
        gpus = handle.extra.get("gpus") or self._chosen.get(spec.run_id, (link, []))[1]
        if gpus:
            variables["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        started = link.agent({"op": "launch", "run_dir": handle.run_dir, "variables": variables})
        return Handle(self.name, str(started["pid"]), handle.run_dir, host=link.alias,
                      extra={"boot_id": started["boot_id"], "gpus": gpus})

    def wait_for_change(self, handle: Handle, timeout_s: float) -> None:
        """The agent waits beside the run (op ``watch``) and answers as soon as the job starts,
        prints or ends: a follower sees the first line without a poll's delay."""
        if handle.pending or timeout_s <= 0:
            time.sleep(max(0.0, timeout_s))
            return
        try:
            self.link(handle).agent({"op": "watch", "run_dir": handle.run_dir, "timeout_s": timeout_s})
        except BackendUnreachable:
            pass  # the next look at the run says so (and core retries with back-off)

    def status(self, handle: Handle) -> JobState:
        return self.status_many([handle])[0]

    def status_many(self, handles: list[Handle]) -> list[JobState]:
        """All of a host's runs in one remote request (one per host)."""
        by_host: dict[str, list[Handle]] = {}
        for h in handles:
            by_host.setdefault(self.link(h).alias, []).append(h)
        states: dict[str, JobState] = {}
        unreachable = []
        for alias, group in by_host.items():
            why = self.unanswered.recent(alias)  # it failed moments ago: say so at once
            if why is not None:
                unreachable.append(why)
                continue
            try:
                answer = self.links[alias].statuses([h.run_dir for h in group], {h.run_dir for h in group if h.pending})
            except BackendUnreachable as e:
                self.unanswered.remember(alias, str(e))
                unreachable.append(str(e))
                continue
            self.unanswered.forget(alias)
            runs, boot_id = answer.get("runs"), answer.get("boot_id")
            for h in group:
                run = runs.get(h.run_dir) if isinstance(runs, dict) else None
                if not isinstance(run, dict):  # the agent's answer is hostile input too
                    unreachable.append(f"{alias}: runctl's agent gave no usable state for {h.run_dir}")
                    continue
                states[h.run_dir] = self._map(h, run, boot_id if isinstance(boot_id, str) else None)
        if unreachable:  # never guessed: those runs keep their last state
            raise BackendUnreachable("; ".join(unreachable), answered=[states.get(h.run_dir) for h in handles])
        return [states[h.run_dir] for h in handles]

    @staticmethod
    def _map(handle: Handle, run: dict[str, Any], boot_id: str | None) -> JobState:
        st, alive, cancel = P.checked_status(run.get("status")), run.get("alive") is True, run.get("cancel") is True
        booted = handle.extra.get("boot_id")
        if st.get("state") != P.FINISHED and booted and boot_id and booted != boot_id:
            return JobState(RunStatus.FAILED, error="the host rebooted while the run was unfinished", **times(st))
        return live_state(st, alive, cancel, "the launcher exited without recording the end "
                                             "(see RUN_DIR/.runctl/launcher.log on the host)")

    def read(self, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
        return self.link(handle).read(handle.run_dir, relpath, offset, max_bytes)

    def list_files(self, handle: Handle, reldir: str) -> list[RunFile]:
        return self.link(handle).list_files(handle.run_dir, reldir)

    def cancel(self, handle: Handle) -> None:
        self.link(handle).agent({"op": "cancel", "run_dir": handle.run_dir})

    def release(self, handle: Handle, state: JobState) -> None:
        link = self.link(handle)
        if handle.extra.get("gpus"):
            link.agent({"op": "release_gpus", "work_dir": link.work_dir, "run_dir": handle.run_dir})
        keep = self.options.get("keep_run_dirs", "failed")
        if keep == "all" or (keep == "failed" and state.status == RunStatus.FAILED):
            return
        self.link(handle).agent({"op": "remove", "run_dir": handle.run_dir})

    def environments(self) -> list[dict[str, Any]] | None:
        return [e for link in self.links.values() for e in link.environments(self.options.get("env_root"))]

    def remove_environments(self, key: str | None, older_than_s: float | None = None,
                            dry_run: bool = False) -> list[tuple[str, int]]:
        return [r for link in self.links.values()
                for r in link.remove_environments(self.options.get("env_root"), key, older_than_s, dry_run)]

    def gc(self, finished: list[Handle], older_than_s: float, dry_run: bool) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for link in self.links.values():
            mine = [h.run_dir for h in finished if self.link(h) is link]
            out += link.gc(mine, older_than_s, dry_run)
        return out

    def check(self) -> list[str]:
        """Per host: reachable with a trusted key, its Python, free disk in work_dir."""
        lines: list[str] = []
        failed: list[RunctlError] = []
        for link in self.links.values():
            try:
                lines += self._check_host(link)
                self.unanswered.forget(link.alias)  # `runctl list` asks it again now
            except RunctlError as e:
                failed.append(e)
                lines.append(f"{link.alias}: NOT usable: {e}")
        if failed:  # the report, with the failures' exit code
            raise type(failed[0])("\n  ".join(["some hosts cannot run jobs:", *lines]))
        return lines

    def _check_host(self, link: HostLink) -> list[str]:
        info = link.agent({"op": "info", "work_dir": link.work_dir})
        lines = [f"{link.alias}: reachable, host key trusted ({link.settings.known_hosts})",
                  f"  python: {link.python} {info['python']}",
                  f"  work_dir: {link.work_dir} ({info['free_bytes'] / 2**30:.1f} GiB free)"]
        gpus = link.agent({"op": "gpus", "work_dir": link.work_dir,
                           "nvidia_smi": self.options.get("nvidia_smi", "nvidia-smi"),
                           "busy_mib": self.options.get("gpu_busy_memory_mib", 1024)})["gpus"]
        lines.append(f"  GPUs: {len(gpus) or 'none'}")
        for g in gpus:
            state = "reserved by runctl" if g["reserved"] else "busy" if g["busy"] else "free"
            lines.append(f"    {g['index']}: {g['name']}, {g['used_mib']:.0f}/{g['total_mib']:.0f} MiB, {state}")
        return lines
