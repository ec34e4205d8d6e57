"""runctl's conformance kit for backend authors, shipped with runctl.

- ``runctl.testing.contract``: the contract tests, as pytest classes to subclass.
  ``BackendMethods`` (and ``WatchingMethods``) drive a backend object method by method, as
  core does: plan, stage, submit, status, read, list, cancel, release, and what a hostile job
  can make them answer. ``BackendContract`` runs real jobs end to end through the real CLI
  against a compute target of the backend's type (registered through the ``runctl.backends``
  entry point group). They need pytest; this package itself does not.
- ``FakeBackend`` (runctl.testing.fake): a backend whose RUN_DIR is a folder the test writes
  and whose state the test sets, for testing code that consumes a backend.
- ``services_for(store_dir, backend_name)``: the Services core lends a backend, for
  building one in a test; ``Project``, ``run_cli``, ``wait_for``: a project folder with job
  files, the real CLI in a subprocess, and polling for order (never for speed).

docs/architecture.md, "Writing a backend", shows a backend in another package run through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runctl.testing.fake import FakeBackend
from runctl.testing.project import Project, Result, run_cli, wait_for

if TYPE_CHECKING:
    from runctl.backends.base import Services

__all__ = ["FakeBackend", "Project", "Result", "run_cli", "services_for", "wait_for"]


def services_for(store_dir: Path, backend_name: str) -> Services:
    """What core lends a backend of type ``backend_name`` over the store at ``store_dir``."""
    from runctl.store.layout import services

    return services(Path(store_dir), backend_name)
