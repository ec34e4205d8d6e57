"""A Session ties together the workspace, the store and the backends one command uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runctl.config.workspace import Workspace, load_workspace
from runctl.errors import ConfigError
from runctl.store.sqlite import RunRecord, Store

if TYPE_CHECKING:
    from runctl.backends.base import Backend


class Session:
    def __init__(self, workspace: Workspace | None = None, start: Path | None = None) -> None:
        self.ws = workspace or load_workspace(start)
        self._store: Store | None = None
        self._backends: dict[str, Backend] = {}

    @property
    def store(self) -> Store:
        if self._store is None:
            from runctl.store import open_store

            self._store = open_store(self.ws)
        return self._store

    def backend(self, target_name: str) -> Backend:
        if target_name not in self._backends:
            from runctl.backends import backend_class
            from runctl.config.workspace import checked_options

            if target_name not in self.ws.targets:
                raise ConfigError(f"compute target {target_name!r} is no longer configured",
                                  file=str(self.ws.config_path or ".runctl/config.yaml"),
                                  hint="add it back under compute_targets to reach its runs")
            try:
                cls = backend_class(self.ws.targets[target_name].type)
                options = checked_options(self.ws, target_name, cls.options_schema)
                self._backends[target_name] = cls(target_name, options, self.store.services(cls.name))
            except ConfigError as e:
                if e.file:
                    raise
                if self.ws.located is None:
                    raise
                raise self.ws.located.error(("compute_targets", target_name, e.field or "type"), e.message,
                                            e.hint) from None
        return self._backends[target_name]

    def backend_for(self, record: RunRecord) -> Backend:
        return self.backend(record.compute_target or "local")

    def close(self) -> None:
        for b in self._backends.values():
            b.close()
        self._backends.clear()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
