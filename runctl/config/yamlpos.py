"""YAML loading that remembers where each value came from, so errors can name file:line:col."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from runctl.errors import ConfigError


@dataclass
class Located:
    """Parsed data plus the position of every key and value, by path (a tuple of keys/indexes)."""

    data: Any
    file: str
    value_pos: dict[tuple, tuple[int, int]]
    key_pos: dict[tuple, tuple[int, int]]
    overrides: dict[tuple, str] = field(default_factory=dict)

    def where(self, path: tuple, *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column (1-based) of ``path``, or of its nearest parent that has one."""
        table = self.key_pos if key else self.value_pos
        p = tuple(path)
        while True:
            if p in table:
                return table[p]
            if key and p in self.value_pos:
                return self.value_pos[p]
            if not p:
                return None, None
            p = p[:-1]

    def error(self, path: tuple, message: str, hint: str | None = None, *, key: bool = False) -> ConfigError:
        field_name = dotted(path) or None
        for n in range(len(path), 0, -1):
            if path[:n] in self.overrides:
                return ConfigError(message, file=self.overrides[path[:n]], field=field_name, hint=hint)
        line, col = self.where(path, key=key)
        return ConfigError(message, file=self.file, line=line, col=col, field=field_name, hint=hint)


def dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Loader(yaml.SafeLoader):
    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        event = self.peek_event()
        node = super().compose_scalar_node(anchor)
        node.explicit_tag = event.tag not in (None, "!")  # type: ignore[attr-defined]  # `!!int 010`
        return node


# Values under these paths are taken as written: a plain `0.10`, `010`, `yes`, `1_000`, `~`
# or date reaches the script as those characters (YAML 1.1 would rewrite them to 0.1, 8,
# true, 1000, null, a date); a value with an explicit tag (`!!int 010`) is converted.
VERBATIM = (("arguments",), ("environment", "environment_variables"))


def _verbatim(path: tuple) -> bool:
    return any(len(path) > len(p) and path[:len(p)] == p for p in VERBATIM)


MAX_DEPTH = 64
MAX_NODES = 100_000  # values after alias expansion: a job file has hundreds
MAX_SCALAR_CHARS = 1_000_000


def _check_shape(text: str, file: str) -> None:
    """Refuse, from the event stream and before building anything, what no config needs and
    what makes a YAML parser slow or deep: nesting past MAX_DEPTH, huge scalars."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line, col = _mark(event)
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=file, line=line, col=col,
                                  hint="a config is a few levels deep; check the file")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            line, col = _mark(event)
            raise ConfigError(f"a value of {len(event.value)} characters (the limit is {MAX_SCALAR_CHARS})",
                              file=file, line=line, col=col, hint="shorten it")


def _mark(event: yaml.Event) -> tuple[int | None, int | None]:
    m = event.start_mark
    return (m.line + 1, m.column + 1) if m is not None else (None, None)


def load_value(text: str, path: tuple, file: str) -> Any:
    """One value given on the command line (``--set PATH=TEXT``), read as YAML the way the
    job file's value at ``path`` is (verbatim where VERBATIM says)."""
    node = yaml.compose(text, Loader=_Loader)
    if node is None:
        return None
    return _build(node, path, _Loader(""), file, {}, {}, _Budget())


def load_located(text: str, file: str) -> Located:
    """Parse YAML text; malformed YAML, duplicate keys and hostile shapes (alias bombs,
    recursive aliases, deep nesting, huge numbers) become ConfigErrors with a line."""
    try:
        _check_shape(text, file)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = e.problem or "malformed YAML"
        raise ConfigError(
            f"malformed YAML: {what}",
            file=file,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
            hint="fix the YAML syntax (check indentation and quoting)",
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", file=file, hint="fix the YAML syntax") from None
    value_pos: dict[tuple, tuple[int, int]] = {}
    key_pos: dict[tuple, tuple[int, int]] = {}
    if node is None:
        return Located({}, file, {(): (1, 1)}, key_pos)
    loader = _Loader("")
    data = _build(node, (), loader, file, value_pos, key_pos, _Budget())
    return Located(data, file, value_pos, key_pos)


class _Budget:
    """Counts built values (aliases expand) and tracks the nodes being built (an alias inside
    its own anchor recurses forever)."""

    def __init__(self) -> None:
        self.nodes = 0
        self.open: set[int] = set()


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(node: yaml.Node, path: tuple, loader: yaml.SafeLoader, file: str, vpos: dict, kpos: dict,
           budget: _Budget) -> Any:
    vpos[path] = _pos(node)
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        line, col = _pos(node)
        raise ConfigError(f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)", file=file,
                          line=line, col=col, field=dotted(path) or None, hint="write the values out; do not nest aliases")
    if id(node) in budget.open:
        line, col = _pos(node)
        raise ConfigError("an alias refers to the value that contains it", file=file, line=line, col=col,
                          field=dotted(path) or None, hint="remove the recursive alias")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        budget.open.add(id(node))
        try:
            return _build_collection(node, path, loader, file, vpos, kpos, budget)
        finally:
            budget.open.discard(id(node))
    if isinstance(node, yaml.ScalarNode) and _verbatim(path) and not getattr(node, "explicit_tag", True):
        return node.value  # the scalar's text as written (quoted: its content)
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as e:
        line, col = _pos(node)
        raise ConfigError(f"cannot read value: {e.problem}", file=file, line=line, col=col, field=dotted(path)) from None
    except ValueError as e:  # e.g. an integer over Python's 4300-digit conversion limit
        line, col = _pos(node)
        raise ConfigError(f"cannot read value: {str(e).split(';')[0]}", file=file, line=line, col=col,
                          field=dotted(path) or None, hint="use a smaller number") from None


def _build_collection(node: yaml.Node, path: tuple, loader: yaml.SafeLoader, file: str, vpos: dict, kpos: dict,
                      budget: _Budget) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                line, col = _pos(knode)
                raise ConfigError("keys must be plain strings", file=file, line=line, col=col, field=dotted(path) or None)
            if key in out:
                line, col = _pos(knode)
                raise ConfigError(
                    f"duplicate key {key!r}", file=file, line=line, col=col,
                    field=dotted(path + (key,)), hint="remove one of the two",
                )
            kpos[path + (key,)] = _pos(knode)
            out[key] = _build(vnode, path + (key,), loader, file, vpos, kpos, budget)
        return out
    return [_build(n, path + (i,), loader, file, vpos, kpos, budget) for i, n in enumerate(node.value)]
