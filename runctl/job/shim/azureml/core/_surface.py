"""The rest of ``azureml.core``'s names a v1 script or notebook imports (stdlib only), so
that importing them never fails inside a runctl job. What runctl can stand for locally is
a plain data holder (Environment, CondaDependencies, RunConfiguration); what only Azure
can do (a cloud Dataset, a Datastore, the model registry, compute clusters) raises, when
used, one error that names the v1 call and the runctl way to do it.
"""

import json
import os

VERSION = "1.61.0"  # the last azureml-core release runctl follows (reference/azureml-v1.md)

_DATA_WAY = ("pass the data's path as an argument (arguments: [--data, /path/to/data]), and on a Docker "
             "target mount it (the target's mounts: [HOST:CONTAINER])")
_WAYS = {
    "Dataset": _DATA_WAY,
    "Datastore": _DATA_WAY,
    "Model": "write the model under ./outputs (it becomes the run's output, `runctl outputs RUN`) and tag the run",
    "ComputeTarget": "declare compute targets in .runctl/config.yaml (`runctl compute list`)",
}
_WAYS["AmlCompute"] = _WAYS["ComputeInstance"] = _WAYS["ComputeTarget"]


class AzureOnlyError(RuntimeError):
    """A v1 call that only Azure ML can carry out."""


def _azure_only(cls_name, call):
    return AzureOnlyError("azureml.core.%s.%s: this needs Azure ML itself, which runctl does not reach; with runctl, %s"
                          % (cls_name, call, _WAYS[cls_name]))


class _AzureCall:
    """``Dataset.Tabular.from_delimited_files(...)``: any attribute chain, refused when called."""

    def __init__(self, cls_name, path):
        self._cls_name, self._path = cls_name, path

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _AzureCall(self._cls_name, "%s.%s" % (self._path, name))

    def __call__(self, *args, **kwargs):
        raise _azure_only(self._cls_name, self._path)


class _AzureOnlyMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _AzureCall(cls.__name__, name)


class _AzureOnly(metaclass=_AzureOnlyMeta):
    def __init__(self, *args, **kwargs):
        raise _azure_only(type(self).__name__, "__init__")


class Dataset(_AzureOnly):
    """v1's Dataset (File, Tabular, get_by_name, ...): a cloud data asset."""


class Datastore(_AzureOnly):
    """v1's Datastore (get, register_azure_blob_container, upload, ...)."""


class Model(_AzureOnly):
    """v1's model registry (Model.register, Model(ws, name), ...)."""


class ComputeTarget(_AzureOnly):
    """v1's ComputeTarget (create, AmlCompute provisioning, ...)."""


class CondaDependencies:
    """v1's CondaDependencies: the packages a job needs (kept as lists)."""

    def __init__(self, conda_dependencies_file_path=None, _underlying_structure=None):
        self.conda_packages, self.pip_packages, self.channels = [], [], []
        self.python_version = None
        if conda_dependencies_file_path:
            self._load(conda_dependencies_file_path)

    @classmethod
    def create(cls, pip_packages=None, conda_packages=None, python_version=None, pin_sdk_version=True):
        dep = cls()
        dep.pip_packages = list(pip_packages or [])
        dep.conda_packages = list(conda_packages or [])
        dep.python_version = python_version
        return dep

    def add_pip_package(self, pip_package):
        self.pip_packages.append(pip_package)

    def add_conda_package(self, conda_package):
        self.conda_packages.append(conda_package)

    def add_channel(self, channel):
        self.channels.append(channel)

    def _load(self, path):
        """A conda environment file's dependencies (the YAML subset such files use)."""
        section = None
        with open(path) as f:
            for raw in f:
                line = raw.split("#", 1)[0].rstrip()
                if not line.strip():
                    continue
                if not line.startswith(" ") and line.endswith(":"):
                    section = line[:-1].strip()
                    continue
                item = line.strip()
                if not item.startswith("- "):
                    continue
                item = item[2:].strip().strip("'\"")
                if section == "channels":
                    self.channels.append(item)
                elif item == "pip:" or item.startswith("pip:"):
                    section = "pip"
                elif section == "pip" and raw.startswith(" " * 4):
                    self.pip_packages.append(item)
                else:
                    section = "dependencies"
                    self.conda_packages.append(item)


class _Section:
    def __init__(self, **fields):
        self.__dict__.update(fields)


class Environment:
    """v1's Environment, as data: what runctl can use of it is the Docker image
    (``docker.base_image``), the Python packages and the environment variables."""

    def __init__(self, name=None):
        self.name, self.version = name, None
        self.environment_variables = {}
        self.python = _Section(user_managed_dependencies=False, interpreter_path="python",
                               conda_dependencies=CondaDependencies(), conda_dependencies_file=None)
        self.docker = _Section(base_image=None, base_dockerfile=None, enabled=False, shm_size="2g", arguments=[])

    @classmethod
    def from_pip_requirements(cls, name, file_path, pip_version=None):
        env = cls(name)
        with open(file_path) as f:
            env.python.conda_dependencies.pip_packages = [ln.strip() for ln in f
                                                          if ln.strip() and not ln.lstrip().startswith("#")]
        return env

    @classmethod
    def from_conda_specification(cls, name, file_path):
        env = cls(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        return env

    @classmethod
    def from_docker_image(cls, name, image, container_registry=None, conda_specification=None, pip_requirements=None):
        env = cls.from_pip_requirements(name, pip_requirements) if pip_requirements else (
            cls.from_conda_specification(name, conda_specification) if conda_specification else cls(name))
        env.docker.base_image = image
        return env

    def register(self, workspace):
        return self

    @classmethod
    def get(cls, workspace, name, version=None, label=None):
        raise AzureOnlyError("azureml.core.Environment.get(%r): environments registered in Azure ML are not reachable "
                             "from runctl; build the Environment in your code (from_pip_requirements, "
                             "from_conda_specification, from_docker_image)" % (name,))

    def to_runctl(self):
        """The job file's ``environment`` section this Environment stands for: its pip
        packages are installed on its Docker image (as Azure ML built it)."""
        out = {}
        if self.environment_variables:
            out["environment_variables"] = {str(k): str(v) for k, v in self.environment_variables.items()}
        packages = [p for p in self.python.conda_dependencies.pip_packages if not p.startswith("azureml-")]
        if self.docker.base_image:
            out["docker"] = ({"base_image": self.docker.base_image, "pip_packages": packages} if packages
                             else {"image": self.docker.base_image})
        return out

    def __repr__(self):
        return "Environment(%s)" % json.dumps({"name": self.name, **self.to_runctl()})


class RunConfiguration:
    """v1's RunConfiguration, as data (script, arguments, target, environment, node_count...)."""

    def __init__(self, script=None, arguments=None, framework=None, communicator=None, conda_dependencies=None,
                 _history_enabled=None, _path=None, _name=None, command=None):
        self.script, self.arguments, self.command = script, list(arguments or []), command
        self.framework, self.communicator = framework or "Python", communicator or "None"
        self.target, self.node_count, self.max_run_duration_seconds = "local", 1, None
        self.environment = Environment()
        self.environment_variables = {}
        if conda_dependencies is not None:
            self.environment.python.conda_dependencies = conda_dependencies

    @classmethod
    def load(cls, path, name=None):
        raise AzureOnlyError("azureml.core.RunConfiguration.load(%r): submit a v1 .runconfig with "
                             "`runctl submit FILE.runconfig` instead" % (os.fspath(path),))
