"""Every bench runs as docs/benchmarks.md says (`python bench/NAME.py`, from the repository
root, against the installed runctl), in its --quick mode, so that none of them rots. The
figures themselves are for docs/benchmarks.md, never asserted here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, require_service

BENCHES = {  # bench -> what it needs (checked by the suites of those services)
    "bench_core.py": [],
    "bench_sysmetrics.py": [],
    "bench_pyenv.py": [],
    "bench_logging.py": [],
    "bench_agent_start.py": ["sshd"],
    "bench_ssh.py": ["sshd"],
    "bench_docker.py": ["dockerd"],
    "bench_slurm.py": ["slurm"],
    "bench_tuning.py": [],
    "bench_team.py": ["postgres"],
}


def test_every_bench_is_checked_here() -> None:
    assert sorted(p.name for p in (REPO / "bench").glob("bench_*.py")) == sorted(BENCHES)


@pytest.mark.slow
@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_a_bench_runs_in_quick_mode_from_the_repository_root(bench: str) -> None:
    from .conftest import pg_ready
    from .test_docker_backend import docker_ready
    from .test_slurm_backend import slurm_ready
    from .test_ssh_backend import ssh_ready

    ready = {"sshd": ssh_ready, "dockerd": docker_ready, "slurm": slurm_ready, "postgres": pg_ready}
    for need in BENCHES[bench]:
        require_service(need, ready[need](), "run tests/infra/up.sh")
    r = subprocess.run([sys.executable, f"bench/{bench}", "--quick"], cwd=REPO, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "|---|" in r.stdout, r.stdout  # its table of figures
