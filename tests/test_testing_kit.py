"""The conformance kit (runctl.testing) as a backend author uses it: from a package of their
own, registered through the entry point group, with a test module of their own and no file of
this repository's tests/ (no conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BACKEND = '''
"""A backend of another package: this machine's processes, under a type name of its own."""
from runctl.backends.local import LocalBackend


class KitDemoBackend(LocalBackend):
    name = "kitdemo"
'''

SUITE = '''
import json
import os
import signal
from pathlib import Path

import pytest

from runctl.testing import services_for
from runctl.testing.contract import BackendContract, BackendMethods, WatchingMethods

from kitdemo import KitDemoBackend


class TestKitDemo(BackendContract):
    @pytest.fixture
    def target_config(self):
        return {"type": "kitdemo"}


class TestKitDemoMethods(WatchingMethods, BackendMethods):
    @pytest.fixture
    def make_backend(self, home):
        return lambda options: KitDemoBackend("under-test", options, services_for(home, "kitdemo"))

    @pytest.fixture
    def stop_from_outside(self):
        def stop(handle):
            status = json.loads((Path(handle.run_dir) / "status.json").read_text())
            os.kill(status["launcher_pid"], signal.SIGTERM)

        return stop
'''


def contract_tests() -> int:
    from runctl.testing.contract import BackendContract, BackendMethods, WatchingMethods

    return sum(name.startswith("test_") for cls in (BackendContract, BackendMethods, WatchingMethods)
               for name in vars(cls))


def test_a_backend_of_another_package_passes_the_kit(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "kitdemo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kitdemo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[runctl.backends]\nkitdemo = kitdemo:KitDemoBackend\n")
    (site / "kitdemo.py").write_text(textwrap.dedent(BACKEND))
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_kitdemo.py").write_text(textwrap.dedent(SUITE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNCTL_", "PYTEST_"))}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
                        str(suite)], cwd=suite, env={**env, "PYTHONPATH": str(site)}, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert f"{contract_tests()} passed" in p.stdout, p.stdout[-2000:]
