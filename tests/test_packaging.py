"""Packaging and public surface: the wheel's layout, the exported names, the backend registry."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import runctl
from runctl.backends import available, backend_class

from .conftest import REPO


def test_wheel_installs_backends_under_runctl_only(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                    str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("runctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "runctl/backends/base.py" in names and "runctl/backends/local.py" in names
    assert not [n for n in names if n.startswith("backends/")], "no bare top-level backends package"
    for needed in ("runctl/runconfig.schema.json", "runctl/job/launcher.py", "runctl/job/context/run.py",
                   "runctl/job/shim/sitecustomize.py", "runctl/job/shim/azureml/core/__init__.py",
                   "runctl/job/shim/azureml/core/_surface.py", "runctl/job/task.py", "runctl/job/agent.py",
                   "runctl/job/entry/launcher.py", "runctl/job/entry/runctl_task.py", "runctl/testing/contract.py",
                   "runctl/job/safefs.py", "runctl/backends/slurm.py", "runctl/web/static/index.html",
                   "runctl/web/static/app.js", "runctl/web/static/uPlot.iife.min.js", "runctl/web/static/uPlot.LICENSE"):
        assert needed in names, needed
    schema = json.loads(zipfile.ZipFile(wheel).read("runctl/runconfig.schema.json"))
    assert schema == json.loads((REPO / "runconfig.schema.json").read_text())
    site = tmp_path / "site"  # installed from the wheel alone, away from this checkout
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    code = ("import runctl, runctl.testing, runctl.testing.contract, runctl.job.context; "
            "print(runctl.__file__); print(runctl.testing.__all__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith(str(site)) and "FakeBackend" in out[1]


def test_public_names() -> None:
    assert runctl.__all__ == sorted(runctl.__all__, key=lambda n: (n != "__version__", n))
    for name in runctl.__all__:
        assert getattr(runctl, name) is not None


def test_third_party_backend_via_entry_point(tmp_path: Path) -> None:
    dist = tmp_path / "fancy_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[runctl.backends]\nfancy = fancy_mod:FancyBackend\n")
    (tmp_path / "fancy_mod.py").write_text(
        "from runctl.backends.local import LocalBackend\nclass FancyBackend(LocalBackend):\n    name = 'fancy'\n")
    code = ("from runctl.backends import available, backend_class\n"
            "print(available()['fancy'], backend_class('fancy').name)")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path)}, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["fancy_mod:FancyBackend", "fancy"]
    assert "fancy" not in available()
    assert backend_class("local").name == "local"


def test_no_sql_outside_the_store() -> None:
    """The store owns its schema: every query is a Store method (the seam a second store,
    the team's PostgreSQL, plugs into), never SQL written in the portal, the API or the CLI."""
    import re

    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b .*\b(FROM|INTO|SET)\b|\.db\.(execute|cursor)\(")
    code = [p for p in sorted([*(REPO / "runctl").rglob("*.py"), *(REPO / "backends").rglob("*.py")])
            if (REPO / "runctl" / "store") not in p.parents]
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in code
                 for n, line in enumerate(p.read_text().splitlines(), 1) if sql.search(line)]
    assert offenders == []


def test_backends_never_see_the_store_layout() -> None:
    """Backends get services (the object cache, a work root, a state folder), never the
    store's directory or its objects/ layout."""
    import re

    leak = re.compile(r'store_dir|\bobjects/|/ "objects"|digest\[:2\]')
    offenders = [f"{p.relative_to(REPO)}:{n}: {line.strip()}" for p in sorted((REPO / "backends").rglob("*.py"))
                 for n, line in enumerate(p.read_text().splitlines(), 1) if leak.search(line)]
    assert offenders == []


def test_no_import_circles(tmp_path: Path) -> None:
    """No two of runctl's modules import each other, directly or round a circle, counting
    imports inside functions (only imports under TYPE_CHECKING aside)."""
    import shutil

    import grimp

    layout = tmp_path / "layout"
    shutil.copytree(REPO / "runctl", layout / "runctl", ignore=shutil.ignore_patterns("__pycache__", "backends"))
    shutil.copytree(REPO / "backends", layout / "runctl" / "backends", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(layout))
    try:
        graph = grimp.build_graph("runctl", exclude_type_checking_imports=True, cache_dir=None)
    finally:
        sys.path.remove(str(layout))
    circles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("runctl") and module != imported and \
                    graph.chain_exists(importer=imported, imported=module):
                circles.append(f"{module} -> {imported} -> ... -> {module}")
    assert circles == []
