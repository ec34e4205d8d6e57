"""Child run ids (stdlib only): scoped to their parent, so no run can name another's.

A child of run ``P`` is ``P_<part>``: ``run.child_run(run_id="x")`` in run P is
``P_x``, and an id that already starts with ``P_`` is kept. The store applies the same
rule to whatever a job writes into events.jsonl, so a hostile job cannot reach another run.
"""

from __future__ import annotations

import re

MAX_RUN_ID_BYTES = 255  # a run id is also a folder name
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def scoped(parent_id: str, wanted: str) -> str:
    """The id of child ``wanted`` of run ``parent_id`` (not checked; see ``check``)."""
    wanted = str(wanted)
    return wanted if wanted.startswith(parent_id + "_") else "%s_%s" % (parent_id, wanted)


def problem(parent_id: str, child_id: str):
    """Why ``child_id`` cannot be a child of ``parent_id``; None if it can."""
    if not child_id.startswith(parent_id + "_"):
        return "a child run id must start with its parent's id and '_'"
    part = child_id[len(parent_id) + 1 :]
    if not _PART.match(part):
        return "use letters, digits, '.', '_' and '-' (starting with a letter or digit)"
    if len(child_id.encode("utf-8")) > MAX_RUN_ID_BYTES:
        return "with its parent's id it is %d bytes, the limit is %d" % (len(child_id.encode("utf-8")), MAX_RUN_ID_BYTES)
    return None
