"""Job files and workspace config: schema as the single source of truth, errors with positions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from runctl.config.jobconfig import NON_SCHEMA_FIELDS, JobConfig, load_job
from runctl.config.workspace import load_workspace
from runctl.errors import ConfigError

from .conftest import REPO, Project

SCHEMA = json.loads((REPO / "runconfig.schema.json").read_text())


def test_schema_and_loader_agree() -> None:
    schema_fields = set(SCHEMA["properties"]) - {"$schema"}
    loader_fields = {f.name for f in dataclasses.fields(JobConfig)} - set(NON_SCHEMA_FIELDS)
    assert schema_fields == loader_fields


def test_packaged_schema_is_the_repository_schema() -> None:
    from importlib import resources

    assert json.loads(resources.files("runctl").joinpath("runconfig.schema.json").read_text()) == SCHEMA


def test_example_jobs_validate(project: Project) -> None:
    ws = load_workspace(REPO)
    for job in sorted((REPO / "examples").glob("*/job*.yaml")):
        load_job(job, ws)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("script: t.py\nresources:\n  cpu: 2\n", "job.yaml:3:3: resources.cpu: unknown field; did you mean 'cpus'?"),
        ("script: t.py\nmax_run_duration_seconds: abc\n",
         "job.yaml:2:27: max_run_duration_seconds: expected integer, got string 'abc'"),
        ("script: t.py\n  bad: [\n", "job.yaml:2:6: malformed YAML"),
        ("script: nope.py\n", "job.yaml:1:9: script: 'nope.py' not found"),
        ("script: t.py\ncompute_target: lokal\n", "job.yaml:2:17: compute_target: unknown compute target 'lokal'; did you mean 'local'?"),
        ("arguments: [a]\n", "job.yaml:1:1: neither script nor command is set"),
        ("script: t.py\ncommand: echo hi\n", "job.yaml:2:1: command: both script and command are set"),
        ("command: echo\narguments: [x]\n", "job.yaml:1:1: command: command cannot be combined"),
        ("script: t.py\nsource_directory: nodir\n", "job.yaml:2:19: source_directory: directory"),
        ("script: t.py\nscript: t.py\n", "job.yaml:2:1: script: duplicate key 'script'"),
        ("scrpt: t.py\n", "job.yaml:1:1: scrpt: unknown field; did you mean 'script'?"),
        ("script: ../t.py\n", "job.yaml:1:9: script: '../t.py' points outside source_directory"),
        ("- script: t.py\n", "job.yaml:1:1: a job file must be a mapping"),
        ("script: t.py\nenvironment:\n  environment_variables:\n    1BAD: x\n", "job.yaml:4:5: environment.environment_variables"),
        ("script: t.py\nresources: {gpus: some}\n", "job.yaml:2:19: resources.gpus"),
    ],
)
def test_bad_job_files_get_one_clear_error(project: Project, text: str, expected: str) -> None:
    (project.root / "t.py").write_text("print(1)\n")
    (project.root / "job.yaml").write_text(text)
    r = project.cli("submit", "job.yaml")
    assert r.rc == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected), r.err
    assert "; " in lines[0], "every error says what to do"
    assert not (project.root.parent / "store" / "runs").exists()
    assert project.cli("list", "--json").json() == []
    v = project.cli("validate", "job.yaml")
    assert v.rc == 2 and v.err == r.err


def test_set_overrides_and_names_itself_in_errors(project: Project) -> None:
    project.write("t.py", "print(1)\n")
    job = project.job(script="t.py", resources={"cpus": 1})
    ws = load_workspace(project.root)
    cfg = load_job(job, ws, ["resources.cpus=4", "tags.team=vision", "arguments=[--lr, 0.1]"])
    assert cfg.resources == {"cpus": 4}
    assert cfg.tags == {"team": "vision"}
    assert cfg.arguments == ["--lr", "0.1"]
    with pytest.raises(ConfigError) as e:
        load_job(job, ws, ["resources.cpus=many"])
    assert str(e.value).startswith("--set resources.cpus=many: resources.cpus: expected number")


def test_workspace_config_found_by_walking_up(tmp_path: Path, home: Path) -> None:
    root = tmp_path / "ws"
    (root / ".runctl").mkdir(parents=True)
    (root / ".runctl" / "config.yaml").write_text(
        "store: ./mystore\ncompute_targets:\n  gpu1: {type: local, cancel_grace_s: 3}\n")
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    import os

    saved = os.environ.pop("RUNCTL_HOME")
    try:
        ws = load_workspace(deep)
    finally:
        os.environ["RUNCTL_HOME"] = saved
    assert ws.store_dir == (root / "mystore").resolve()
    assert ws.targets["gpu1"].options == {"cancel_grace_s": 3}
    assert "local" in ws.targets
    assert load_workspace(deep).store_dir == home.resolve(), "RUNCTL_HOME wins"


def test_bad_workspace_config(tmp_path: Path, home: Path) -> None:
    root = tmp_path / "ws"
    (root / ".runctl").mkdir(parents=True)
    (root / ".runctl" / "config.yaml").write_text("compute_targets:\n  gpu1: {tipe: local}\n")
    with pytest.raises(ConfigError) as e:
        load_workspace(root)
    assert ".runctl/config.yaml:2:9: compute_targets.gpu1: missing required field 'type'" in str(e.value)


def test_unknown_backend_type_is_bad_input(project: Project) -> None:
    (project.root / ".runctl").mkdir()
    (project.root / ".runctl" / "config.yaml").write_text("compute_targets:\n  k8s: {type: kubernetes}\n")
    project.write("t.py", "print(1)\n")
    r = project.cli("submit", str(project.job(script="t.py", compute_target="k8s")))
    assert r.rc == 2
    assert r.err.startswith("error: ") and "config.yaml:2:15: compute_targets.k8s.type: unknown compute target type" in r.err
    assert project.cli("list", "--json").json() == []


def test_a_valid_document_is_remembered_and_an_invalid_one_never(project: Project, tmp_path: Path) -> None:
    project.write("t.py", "print(1)\n")
    job = project.job(script="t.py")
    cache = tmp_path / "xdg-cache" / "runctl" / "valid"
    assert project.cli("validate", str(job)).rc == 0
    remembered = len(list(cache.iterdir()))  # the job, and the target's options
    assert remembered >= 1
    assert project.cli("validate", str(job)).rc == 0, "valid again, from the cache"
    (project.root / "bad.yaml").write_text("script: t.py\nsource_directory: src\nresources: {cpus: many}\n")
    assert project.cli("validate", "bad.yaml").rc == 2
    assert project.cli("validate", "bad.yaml").rc == 2
    assert len(list(cache.iterdir())) == remembered


@pytest.mark.parametrize(("target", "expect"), [
    ("{type: local, keep_run_dirs: al}", "config.yaml:2:35: compute_targets.t.keep_run_dirs: 'al' is not one of: "
                                         "failed, all, none; did you mean 'all'?"),
    ("{type: docker, imgae: x}", "config.yaml:2:21: compute_targets.t.imgae: unknown field; did you mean 'image'?"),
    ("{type: docker, memory: lots}", "compute_targets.t.memory: 'lots' is not a memory size; use a number of bytes"),
    ("{type: local, cancel_grace_s: -1}", "compute_targets.t.cancel_grace_s"),
])
def test_target_options_are_validated_by_their_backend(project: Project, target: str, expect: str) -> None:
    (project.root / ".runctl").mkdir()
    (project.root / ".runctl" / "config.yaml").write_text(f"compute_targets:\n  t: {target}\n")
    job = project.script_job("print(1)\n", compute_target="t")
    for cmd in ("validate", "submit"):
        r = project.cli(cmd, str(job))
        assert r.rc == 2 and expect in r.err and len(r.err.splitlines()) == 1, r.err
    assert project.cli("list", "--json").json() == []


@pytest.mark.parametrize(("text", "size"), [
    ("512m", 512 << 20), ("4g", 4 << 30), ("2T", 2 << 40), ("1.5GiB", 3 << 29), ("4gb", 4 << 30), (1024, 1024),
    ("100", 100), ("64Ki", 64 << 10),
])
def test_memory_units(text: object, size: int) -> None:
    from runctl.config.resources import parse_memory

    assert parse_memory(text) == size


@pytest.mark.parametrize("bad", ["lots", "4x", "-1g", "1.5.2g", "Gi", 0, True])
def test_bad_memory_is_exit_2_naming_the_forms(project: Project, bad: object) -> None:
    job = project.script_job("print(1)\n", resources={"memory": bad})
    r = project.cli("validate", str(job))
    assert r.rc == 2 and "resources.memory" in r.err and "512m, 4g, 2T, 1.5GiB" in r.err and "job.yaml:" in r.err, r.err
    r = project.cli("validate", str(project.job("ok.yaml", script="job.py")), "--set", f"resources.memory={bad}")
    assert r.rc == 2 and "--set resources.memory" in r.err, r.err


def test_arguments_reach_the_script_exactly_as_written(project: Project) -> None:
    """YAML 1.1 rewrites plain scalars (0.10 -> 0.1, 010 -> 8, yes -> true, 1_000 -> 1000,
    ~ -> None, a date -> a date); argv holds what the user typed, except with an explicit tag."""
    typed = ["--lr", "0.10", "--n", "010", "--flag", "yes", "--x", "1_000", ".5", "1e-4", "~", "null", "on",
             "0x1F", "2026-11-27", "'quoted 0.10'", '"double"', "!!int 010", "!!float 1"]
    expected = ["--lr", "0.10", "--n", "010", "--flag", "yes", "--x", "1_000", ".5", "1e-4", "~", "null", "on",
                "0x1F", "2026-11-27", "quoted 0.10", "double", "8", "1.0"]
    src = project.root / "src"
    src.mkdir(exist_ok=True)
    (src / "echo.py").write_text("import json, os, sys\n"
                                 "print(json.dumps([sys.argv[1:], os.environ['OMP_NUM_THREADS'], os.environ['N']]))\n")
    (project.root / "args.yaml").write_text(
        "source_directory: src\nscript: echo.py\narguments: [" + ", ".join(typed) + "]\n"
        "environment:\n  environment_variables: {OMP_NUM_THREADS: 08, N: 0.50}\n")
    import json as _json

    def ran(*sets: str) -> list:
        rid = project.cli("submit", "args.yaml", "-q", "--wait", *sets, check=True).out.strip()
        return _json.loads(project.cli("logs", rid, check=True).out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    assert ran() == [expected, "08", "0.50"]
    assert ran("--set", "arguments=[--lr, 0.10, --n, 010, yes]", "--set", "environment.environment_variables.N=010") \
        == [["--lr", "0.10", "--n", "010", "yes"], "08", "010"]


V1_RUNCONFIG = """
script: train.py
arguments: [--lr, 0.10, --epochs, 5]
target: local
framework: PyTorch
communicator: Nccl
maxRunDurationSeconds: 3600
nodeCount: 1
pytorch:
  processCount: 2
environment:
  name: my-env
  environmentVariables: {EXAMPLE: "1"}
  python:
    userManagedDependencies: true
    interpreterPath: python3
    condaDependencies:
      dependencies:
      - python=3.8
      - pip: [azureml-defaults, torch==2.0]
  docker:
    enabled: true
    baseImage: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04
    shmSize: 2g
history: {outputCollection: true}
dataReferences:
  mydata: {dataStoreName: workspaceblobstore}
"""


def test_a_v1_run_configuration_converts_and_submits_as_it_is(project: Project) -> None:
    from runctl.config.v1config import convert

    proj = project.root / "v1proj"
    (proj / ".azureml").mkdir(parents=True)
    (proj / "train.py").write_text("import os, sys\nprint('args', sys.argv[1:], os.environ['EXAMPLE'])\n")
    cfg = proj / ".azureml" / "train.runconfig"
    cfg.write_text(V1_RUNCONFIG)
    job, notes, _ = convert(cfg)
    assert job == {"source_directory": str(proj), "experiment": "v1proj", "script": "train.py",
                   "arguments": ["--lr", "0.10", "--epochs", "5"], "compute_target": "local",
                   "max_run_duration_seconds": 3600,
                   "distributed_job_config": {"type": "pytorch", "process_count": 2},
                   "environment": {"name": "my-env", "python": {"interpreter_path": "python3",
                                                                "user_managed_dependencies": True},
                                   "docker": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04",
                                              "shm_size": "2g"},
                                   "environment_variables": {"EXAMPLE": "1"}}}
    joined = "\n".join(notes)
    for left_out in ("framework", "history", "dataReferences", "conda packages python=3.8",
                     "pip packages torch==2.0 left out: userManagedDependencies is true"):
        assert left_out in joined, (left_out, notes)
    out = project.cli("convert", str(cfg), "-o", str(proj / "job.yaml"))
    assert out.rc == 0 and "dataReferences: not carried over" in out.err, out.err
    simple = V1_RUNCONFIG.replace("communicator: Nccl", "communicator: None").replace("framework: PyTorch",
                                                                                    "framework: Python")
    cfg.write_text(simple)
    r = project.cli("submit", str(cfg), "-q", "--wait")
    assert r.rc == 0 and "history: not carried over" in r.err, r.err
    assert "args ['--lr', '0.10', '--epochs', '5'] 1" in project.cli("logs", r.out.strip(), check=True).out


def test_v1_names_get_runctl_names_and_every_error_is_reported_in_line_order(project: Project) -> None:
    (project.root / "src").mkdir(exist_ok=True)
    (project.root / "src" / "t.py").write_text("pass\n")
    (project.root / "v1names.yaml").write_text(
        "source_directory: src\nscript: t.py\ntarget: local\nmaxRunDurationSeconds: 5\nargumnts: [1]\n"
        "environment:\n  environmentVariables: {A: 1}\nnode_count: zero\n")
    r = project.cli("validate", "v1names.yaml")
    assert r.rc == 2
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert lines == [
        "error: v1names.yaml:3:1: target: unknown field; that is Azure ML v1's name; runctl's is compute_target",
        "error: v1names.yaml:4:1: maxRunDurationSeconds: unknown field; that is Azure ML v1's name; runctl's is "
        "max_run_duration_seconds",
        "error: v1names.yaml:5:1: argumnts: unknown field; did you mean 'arguments'?",
        "error: v1names.yaml:7:3: environment.environmentVariables: unknown field; that is Azure ML v1's name; "
        "runctl's is environment_variables",
        "error: v1names.yaml:8:13: node_count: expected integer, got string 'zero'; fix the value's type "
        "(Number of nodes; backends that run one node refuse more.)",
    ], r.err


@pytest.mark.parametrize("line, field", [
    ("environment: str", "environment"),
    ("environment:\n  python: 5", "environment.python"),
    ("environment:\n  docker: [1, 2]", "environment.docker"),
    ("environmentVariables: [a, b]", "environmentVariables"),
    ("mpi:\n  processCountPerNode: many", "mpi.processCountPerNode"),
    ("mpi: x", "mpi"),
    ("environment:\n  python:\n    condaDependencies:\n      dependencies:\n      - pip: 7", "pip"),
    ("arguments: not a list", "arguments"),
])
@pytest.mark.parametrize("command", ["submit", "convert", "validate"])
def test_a_hostile_v1_run_configuration_is_one_error_line(project: Project, line: str, field: str,
                                                          command: str) -> None:
    cfg = project.root / "bad.runconfig"
    cfg.write_text(f"script: train.py\n{line}\n")
    project.write("train.py", "print(1)\n")
    r = project.cli(command, str(cfg))
    assert r.rc == 2, (r.rc, r.err)
    assert "Traceback" not in r.err and "bad.runconfig:" in r.err and field in r.err, r.err
    assert project.cli("list", "--json").json() == []
