"""The Run's child runs: child_run, create_children, get_children (stdlib only). A mixin of
``Run`` (run.py); a child's events go through its parent's writer, tagged with its id."""

from __future__ import annotations

import os
import time
import uuid

from . import _ids, _values

_time = time.time

MAX_CHILDREN = 100


class ChildCalls:
    # -- children ---------------------------------------------------------------------------
    def child_run(self, name=None, run_id=None, outputs=None):
        child_id = _ids.scoped(self._id, run_id or uuid.uuid4().hex[:8])
        why = _ids.problem(self._id, child_id)
        if why:
            raise _values.LoggingError("child run id %r: %s" % (run_id, why))
        if name is not None and len(str(name)) > _values.MAX_DISPLAY_NAME_CHARS:
            raise _values.LoggingError("child run name is %d characters, the limit is %d"
                                       % (len(str(name)), _values.MAX_DISPLAY_NAME_CHARS))
        root = None if self._root is None else os.path.join(self._root, "runs", child_id)
        child = type(self)._make_child(self, child_id, root, name)
        self._pending.append(("run", child_id, {"parent": self._id, "display_name": name}, None, _time(),
                              {"r": child_id}))
        self._children.append(child)
        return child

    def _make_child(self, child_id, root, name):
        raise NotImplementedError  # each Run class makes its own kind of child (run.py)

    def create_children(self, count=None, tag_key=None, tag_values=None):
        if (count is None) == (tag_key is None or tag_values is None):
            raise ValueError("create_children: give count, or tag_key and tag_values")
        n = count if count is not None else len(tag_values)
        if n > MAX_CHILDREN:
            raise ValueError("create_children: at most %d children at once, asked for %d" % (MAX_CHILDREN, n))
        children = []
        for i in range(n):
            child = self.child_run()
            if count is not None:
                child.tag("azureml.batch_child_number", str(i))
            else:
                child.tag(tag_key, tag_values[i])
            children.append(child)
        return children

    def get_children(self, recursive=False, tags=None, properties=None, type=None, status=None):
        for child in list(self._children):
            yield child
            if recursive:
                yield from child.get_children(recursive=True)

