"""The Run's file calls: upload, download, list, register a model (stdlib only). A mixin of
``Run`` (run.py); names map onto the run's folder as runctl_context._files says."""

from __future__ import annotations

import os
import shutil
import time

from . import _files, _values

_time = time.time


class FileCalls:
    # -- files ------------------------------------------------------------------------------
    def _file_path(self, name):
        if self._root is None:
            raise _values.LoggingError("this offline run keeps no files")
        return _files.path_for(self._root, name)

    def _store_file(self, name, src):
        if self._root is None:
            print("Attempted to track file %s at %s" % (name, src))
            return name
        try:
            return _files.copy_in(self._root, name, src)
        except ValueError as e:
            raise _values.LoggingError(str(e)) from None

    def register_model(self, model_name, model_path=None, tags=None, properties=None, model_framework=None,
                       model_framework_version=None, description=None, datasets=None, sample_input_dataset=None,
                       sample_output_dataset=None, resource_configuration=None, **kwargs):
        """v1: register a file or folder of this run (``model_path``, e.g. "outputs/model.pkl")
        as a model: runctl's store records it, numbered per name (`runctl models`)."""
        _values.check_name(model_name)
        if model_path is not None:
            _files.check_name(str(model_path))
        value = {"path": None if model_path is None else str(model_path).replace(os.sep, "/"),
                 "tags": {str(k): str(v) for k, v in (tags or {}).items()},
                 "properties": {str(k): str(v) for k, v in (properties or {}).items()},
                 "framework": model_framework, "framework_version": model_framework_version,
                 "description": description}
        self._pending.append(("model", model_name, value, None, _time(), self._extra))
        return RegisteredModel(model_name, value["path"], value["tags"], self.id)

    def upload_file(self, name, path_or_stream, datastore_name=None):
        return self._store_file(name, path_or_stream)

    def upload_files(self, names, paths, return_artifacts=False, timeout_seconds=None, datastore_name=None):
        names, paths = list(names), list(paths)
        if len(names) != len(paths):
            raise TypeError("upload_files: %d names for %d paths" % (len(names), len(paths)))
        return [self._store_file(n, p) for n, p in zip(names, paths)]

    def upload_folder(self, name, path, datastore_name=None):
        if not os.path.isdir(path):
            raise FileNotFoundError("no such folder: %r" % (path,))
        stored = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                stored.append(self._store_file(name.rstrip("/") + "/" + rel, full))
        return stored

    def get_file_names(self):
        return [] if self._root is None else _files.list_names(self._root)

    def download_file(self, name, output_file_path=None, _validate_checksum=False):
        src = self._file_path(name)
        if not os.path.isfile(src):
            raise FileNotFoundError("run %s has no file %r; see run.get_file_names()" % (self._id, name))
        dest = output_file_path or os.path.basename(name)
        if os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(name))
        shutil.copyfile(src, dest)
        return dest

    def download_files(self, prefix=None, output_directory=None, output_paths=None, batch_size=100,
                       append_prefix=True, timeout_seconds=None):
        out = output_directory or "."
        done = []
        for name in self.get_file_names():
            if prefix and not name.startswith(prefix):
                continue
            rel = name if append_prefix or not prefix else name[len(prefix):].lstrip("/")
            dest = os.path.join(out, rel)
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            done.append(self.download_file(name, dest))
        return done



class RegisteredModel(object):
    """What ``run.register_model`` returns: the name, the path in the run, its tags (the
    version is given when the store records it: `runctl models NAME`)."""

    def __init__(self, name, path, tags, run_id):
        self.name, self.path, self.tags, self.run_id = name, path, tags, run_id

    def __repr__(self):
        return "Model(name=%r, path=%r, run_id=%r)" % (self.name, self.path, self.run_id)
