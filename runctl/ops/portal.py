"""Where the portal (`runctl ui`) shows a run: the address a running `runctl ui` of this
store serves at (its ``ui.json``), else RUNCTL_UI_URL, else the default address."""

from __future__ import annotations

import json
import os
from pathlib import Path

UI_URL_ENV = "RUNCTL_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:8765"
UI_FILE = "ui.json"


def running_url(store_dir: Path | None) -> str | None:
    """The address a live `runctl ui` of this store serves at, if one runs."""
    from runctl.job.launcher import process_gone

    if store_dir is None:
        return None
    try:
        info = json.loads((Path(store_dir) / UI_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or process_gone(info.get("owner")):
        return None
    url = info.get("url")
    return url if isinstance(url, str) else None


def portal_base(store_dir: Path | None = None) -> str:
    return (running_url(store_dir) or os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL).rstrip("/")


def portal_url(run_id: str, store_dir: Path | None = None) -> str:
    return f"{portal_base(store_dir)}/runs/{run_id}"
