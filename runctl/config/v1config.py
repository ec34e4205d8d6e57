"""Azure ML v1 run configurations as they are (`.runconfig`, `run_config.yml`: the camelCase
YAML that `RunConfiguration.save()` writes): turned into a runctl job, every field that has a
runctl meaning mapped, every other one listed with the reason it was left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runctl.config.yamlpos import Located, load_located
from runctl.errors import ConfigError

# v1 fields runctl has no use for, and why (shown by `runctl convert` and `submit`).
IGNORED = {
    "framework": "runctl runs the script as it is, whatever its framework",
    "history": "runctl keeps every run's outputs, logs and snapshot",
    "dataReferences": "Azure datastores are not reachable; pass data paths as arguments (and mount them on Docker)",
    "data": "Azure datasets are not reachable; pass data paths as arguments (and mount them on Docker)",
    "outputData": "write outputs under ./outputs instead",
    "datacaches": "Azure data caches are not reachable",
    "sourceDirectoryDataStore": "the snapshot is taken from the source directory",
    "amlcompute": "compute targets are declared in .runctl/config.yaml",
    "autoClusterComputeSpecification": "compute targets are declared in .runctl/config.yaml",
    "kubernetescompute": "compute targets are declared in .runctl/config.yaml",
    "spark": "Spark jobs are not run by runctl",
    "hdi": "HDInsight is not reachable",
    "databricks": "Databricks is not reachable",
    "services": "interactive services (Jupyter, SSH...) are not started by runctl",
    "credentialPassthrough": "runctl runs as you, with your own credentials",
    "priority": "a job's priority is its target's business (Slurm: the target's qos)",
    "paralleltask": "ParallelRunStep tasks are not run by runctl",
    "tensorflow": "see communicator",
    "mpi": "see communicator",
    "pytorch": "see communicator",
    "aiSuperComputer": "not reachable",
}
_TEXT = {"type": ["string", "null"]}
_COUNT = {"type": ["integer", "null"], "minimum": 1}
_OBJECT = ["object", "null"]
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
# The types of the v1 fields runctl reads (a file of the wrong shape is one file:line:col
# error, exit 2, never a traceback). Fields runctl leaves out are not checked.
V1_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "script": _TEXT,
    "command": {"type": ["string", "array", "null"], "items": {"type": "string"}},
    "arguments": {"type": ["array", "null"], "items": {"type": ["string", "number", "boolean"]}},
    "target": _TEXT,
    "maxRunDurationSeconds": _COUNT,
    "nodeCount": _COUNT,
    "communicator": _TEXT,
    "environmentVariables": {"type": _OBJECT, "additionalProperties": _SCALAR},
    "mpi": {"type": _OBJECT, "properties": {"processCountPerNode": _COUNT}},
    "pytorch": {"type": _OBJECT, "properties": {"processCount": _COUNT}},
    "tensorflow": {"type": _OBJECT, "properties": {"workerCount": _COUNT, "parameterServerCount": _COUNT}},
    "framework": _TEXT,
    "environment": {"type": _OBJECT, "properties": {
        "name": _TEXT,
        "environmentVariables": {"type": _OBJECT, "additionalProperties": _SCALAR},
        "python": {"type": _OBJECT, "properties": {
            "interpreterPath": _TEXT,
            "userManagedDependencies": {"type": ["boolean", "null"]},
            "condaDependenciesFile": _TEXT,
            "condaDependencies": {"type": _OBJECT, "properties": {"dependencies": {
                "type": ["array", "null"],
                "items": {"type": ["string", "object"], "properties": {"pip": {"type": ["array", "null"],
                                                                              "items": {"type": "string"}}}}}}},
        }},
        "docker": {"type": _OBJECT, "properties": {
            "enabled": {"type": ["boolean", "null"]}, "baseImage": _TEXT, "shmSize": _TEXT, "baseDockerfile": _TEXT,
            "baseImageRegistry": {"type": _OBJECT},
        }},
    }},
}}

MAPPED = {"script", "command", "arguments", "target", "maxRunDurationSeconds", "nodeCount", "communicator",
          "environment", "environmentVariables"}


def is_v1(path: Path, data: Any) -> bool:
    """A v1 run configuration, by its name (a runctl job file that uses v1's field names is
    refused with the runctl names instead: see schemacheck's hints)."""
    return path.suffix == ".runconfig" or path.name in ("run_config.yml", "run_config.yaml")


def convert(path: Path) -> tuple[dict[str, Any], list[str], Located]:
    """(the runctl job, notes on what was not carried over, where each v1 field was)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the run configuration: {e.strerror}", file=str(path)) from None
    located = load_located(text, str(path))
    v1 = located.data
    if not isinstance(v1, dict):
        raise located.error((), "a v1 run configuration is a mapping of fields", "check the file")
    from runctl.config.schemacheck import validate

    validate(located, V1_SCHEMA)
    job: dict[str, Any] = {}
    notes: list[str] = []
    folder = path.resolve().parent
    source = folder.parent if folder.name in (".azureml", "aml_config") else folder
    job["source_directory"] = str(source)
    job["experiment"] = source.name  # (v1 named it at submit: Experiment(ws, name); the project's folder here)
    if v1.get("command"):
        job["command"] = v1["command"]
    elif v1.get("script"):
        job["script"] = v1["script"]
    if v1.get("arguments"):
        job["arguments"] = [str(a) for a in v1["arguments"]]
    if v1.get("target"):
        job["compute_target"] = str(v1["target"])
    if v1.get("maxRunDurationSeconds"):
        job["max_run_duration_seconds"] = v1["maxRunDurationSeconds"]
    if v1.get("nodeCount") not in (None, 1):
        job["node_count"] = v1["nodeCount"]
    distributed = _communicator(v1, notes)
    if distributed:
        job["distributed_job_config"] = distributed
    env = _environment(v1.get("environment") or {}, notes)
    variables = {**(v1.get("environmentVariables") or {}), **env.pop("environment_variables", {})}
    if variables:
        env["environment_variables"] = {str(k): str(v) for k, v in variables.items()}
    if env:
        job["environment"] = env
    for key, value in v1.items():
        if key in MAPPED or value in (None, {}, [], False, "") or (key == "framework" and value == "Python"):
            continue
        notes.append(f"{key}: not carried over ({IGNORED[key]})" if key in IGNORED
                     else f"{key}: not a v1 run configuration field runctl knows; left out")
    return job, notes, located


def _communicator(v1: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    comm = str(v1.get("communicator") or "None")
    if comm in ("OpenMpi", "IntelMpi", "Mpi"):
        per_node = (v1.get("mpi") or {}).get("processCountPerNode") or 1
        return {"type": "mpi", "process_count_per_node": int(per_node)}
    if comm in ("Nccl", "Gloo") or (v1.get("framework") == "PyTorch" and comm != "None"):
        pt = v1.get("pytorch") or {}
        out: dict[str, Any] = {"type": "pytorch"}
        if pt.get("processCount"):
            out["process_count"] = int(pt["processCount"])
        return out
    if comm == "ParameterServer":
        tf = v1.get("tensorflow") or {}
        notes.append(f"communicator: ParameterServer ({tf.get('workerCount', 1)} workers, "
                     f"{tf.get('parameterServerCount', 1)} parameter servers) becomes one TensorFlow job; "
                     f"runctl does not start parameter servers")
        return {"type": "tensorflow"}
    if comm != "None":
        notes.append(f"communicator: {comm} is not one runctl knows; left out")
    return None


def _environment(env: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if env.get("name"):
        out["name"] = str(env["name"])
    if env.get("environmentVariables"):
        out["environment_variables"] = dict(env["environmentVariables"])
    python = env.get("python") or {}
    py: dict[str, Any] = {}
    if python.get("interpreterPath") and python.get("interpreterPath") != "python":
        py["interpreter_path"] = str(python["interpreterPath"])
    if python.get("userManagedDependencies") is not None:
        py["user_managed_dependencies"] = bool(python["userManagedDependencies"])
    conda = python.get("condaDependencies") or {}
    pip = [str(p) for dep in conda.get("dependencies") or [] if isinstance(dep, dict) for p in dep.get("pip") or []
           if not str(p).startswith("azureml-")]  # (v1's own packages: runctl's shim stands for them)
    if pip and py.get("user_managed_dependencies"):
        notes.append(f"environment.python.condaDependencies: pip packages {', '.join(pip)} left out: "
                     f"userManagedDependencies is true (the interpreter is used as it is); set it false to have "
                     f"runctl install them")
    elif pip:  # built where the job runs: a virtual environment on the host, or into the image on Docker
        py["pip_packages"] = pip
    if py:
        out["python"] = py
    conda_only = [str(d) for d in conda.get("dependencies") or [] if isinstance(d, str) and not d.startswith("pip")]
    if conda_only:
        notes.append(f"environment.python.condaDependencies: conda packages {', '.join(conda_only)}: runctl does not "
                     f"build conda environments; use an image that has them")
    if python.get("condaDependenciesFile"):
        notes.append(f"environment.python.condaDependenciesFile ({python['condaDependenciesFile']}): runctl does not "
                     f"build conda environments; use an image that has them (environment.docker.image)")
    docker = env.get("docker") or {}
    dk: dict[str, Any] = {}
    if docker.get("enabled") or docker.get("baseImage"):
        if docker.get("baseImage"):  # (on Docker, environment.python's packages are installed on it)
            dk["image"] = str(docker["baseImage"])
        if docker.get("shmSize"):
            dk["shm_size"] = str(docker["shmSize"])
        if not docker.get("enabled"):
            notes.append("environment.docker.enabled was false: the image applies when the job runs on a Docker target")
    if docker.get("baseDockerfile"):
        notes.append("environment.docker.baseDockerfile: write it to a file beside the job and set "
                     "environment.docker.dockerfile to it")
    if docker.get("baseImageRegistry", {}) and (docker["baseImageRegistry"] or {}).get("address"):
        notes.append("environment.docker.baseImageRegistry: log in with `docker login` on the machine that runs jobs")
    if dk:
        out["docker"] = dk
    return out
