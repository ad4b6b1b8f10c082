"""Read YAML keeping the line of every key and list item, so errors can say `file:line`.

One loader for untrusted config text. libyaml's C parser (PyYAML's `CSafeLoader`; the
pure-Python `SafeLoader` when PyYAML was built without it) turns the text into events, and
one loop over them builds the data and the lines with an explicit stack, so nothing recurses
however deep the text nests. Scalars resolve exactly as `yaml.safe_load` resolves them,
YAML 1.1 quirks included (`on:` is the boolean true). Everything else is refused with the
line and what to do, as a `YamlSyntaxError`:

- more than MAX_BYTES of text, nesting deeper than MAX_DEPTH, more than MAX_NODES values;
- aliases (`*name`) that would copy more than MAX_ALIASED values in all ("billion laughs");
- merge keys `<<:` (refused rather than supported: a config says each value where it applies),
  explicit tags (`!!python/object`, `!foo`, `!!str`), lists or mappings used as keys,
  duplicate keys and anchors, more than one document;
- scalars that resolve to a value that cannot exist (`2026-02-30`, a 5,000-digit integer).
"""
from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple  # a path into the document: ("objectives", 0, "key_results", 2, "target")

MAX_BYTES = 5_000_000
MAX_DEPTH = 64
MAX_NODES = 250_000  # a 5,000-key-result config holds about 110,000
MAX_ALIASED = 10_000

_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_KIND = {"tag:yaml.org,2002:int": "an integer",
         "tag:yaml.org,2002:float": "a number"}
_TOO_DEEP = f"values nest more than {MAX_DEPTH} levels deep: flatten the structure"
_NO_KEY = object()  # a mapping frame waiting for its next key


class YamlSyntaxError(Exception):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class _Frame:
    """An open list or mapping: where it is, and the anchor that will name it once closed.

    `log_at` and `nodes_at` are the log length and value count before it, so that an anchor's
    lines and size (itself included) are what was added since; `deep` is the deepest level in it.
    """

    __slots__ = ("value", "path", "key", "line", "anchor", "log_at", "nodes_at", "deep")

    def __init__(self, value: Any, path: Path_, line: int, anchor: str | None, log_at: int, nodes_at: int,
                 depth: int):
        self.value, self.path, self.key, self.line = value, path, _NO_KEY, line
        self.anchor, self.log_at, self.nodes_at, self.deep = anchor, log_at, nodes_at, depth


class _Anchored:
    """A finished anchored value: what an alias to it copies, and what the copy costs."""

    __slots__ = ("value", "lines", "nodes", "depth", "line")

    def __init__(self, value: Any, lines: list[tuple[Path_, int]], nodes: int, depth: int, line: int):
        self.value, self.lines, self.nodes, self.depth, self.line = value, lines, nodes, depth, line


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML text; return the data and a map from document path to 1-based line."""
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise YamlSyntaxError(None, f"the file is {size / 1e6:.1f} MB, over the {MAX_BYTES // 1_000_000} MB "
                                    f"limit for a config: split it into several files")
    try:
        loader = _LOADER(text)  # the pure-Python reader checks the characters here
        try:
            return _build(loader)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        if "nesting depth" in problem:  # libyaml's own limit, met while it reads ahead
            raise YamlSyntaxError(line, _TOO_DEEP) from None
        raise YamlSyntaxError(line, f"YAML syntax error: {problem}; check indentation and quoting "
                                    f"(quote values containing ': ' or '#')") from None
    except yaml.reader.ReaderError as exc:  # its offset counts bytes or characters by reader: find the character
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        at = text.find(char) if isinstance(char, str) else -1
        raise YamlSyntaxError(text.count("\n", 0, at) + 1 if at >= 0 else None,
                              f"character {char!r} is not allowed in YAML: remove it (is this a text file?)") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, f"YAML error: {exc}") from None


def _build(loader: Any) -> tuple[Any, dict[Path_, int]]:
    """One pass over the parser's events: the data, and (path, line) for every value."""
    stack: list[_Frame] = []
    log: list[tuple[Path_, int]] = []  # each path once, in document order; an anchor's lines are a slice
    anchors: dict[str, _Anchored] = {}
    plain: dict[str, Any] = {}  # plain scalar text -> its value (all immutable), as keys and values repeat
    nodes = aliased = 0
    root: Any = None
    documents = 0
    while True:
        event = loader.get_event()
        kind = type(event)
        if kind is yaml.StreamEndEvent:
            return root, dict(log)
        if kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise YamlSyntaxError(event.start_mark.line + 1, "a second YAML document (`---`) starts here: "
                                                                 "keep one document per config file")
            continue
        if kind in (yaml.StreamStartEvent, yaml.DocumentEndEvent):
            continue
        line = event.start_mark.line + 1
        if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            frame = stack.pop()
            parent = stack[-1] if stack else None
            if frame.anchor is not None:
                anchors[frame.anchor] = _Anchored(frame.value, _relative(log, frame.log_at, frame.path),
                                                  nodes - frame.nodes_at, frame.deep - len(stack), frame.line)
            if parent is not None and frame.deep > parent.deep:
                parent.deep = frame.deep
            if parent is None:
                root = frame.value
            else:
                _attach(parent, frame.value)
            continue
        # A value starts here: a scalar, an alias, or a list or mapping.
        parent = stack[-1] if stack else None
        is_key = parent is not None and type(parent.value) is dict and parent.key is _NO_KEY
        if parent is None:
            path: Path_ = ()
        elif is_key:
            path = None
        elif type(parent.value) is list:
            path = parent.path + (len(parent.value),)
        else:
            path = parent.path + (parent.key,)
        if nodes >= MAX_NODES:
            raise YamlSyntaxError(line, f"more than {MAX_NODES:,} values: split the config into several files")
        if kind is yaml.AliasEvent:
            target = anchors.get(event.anchor)
            if target is None:
                open_ = any(f.anchor == event.anchor for f in stack)
                raise YamlSyntaxError(line, f"alias `*{event.anchor}` is used inside its own anchor: a value cannot "
                                            f"contain itself" if open_ else
                                      f"alias `*{event.anchor}` has no anchor before it: define "
                                      f"`&{event.anchor}` first, or fix the name")
            nodes += target.nodes
            aliased += target.nodes
            if aliased > MAX_ALIASED:
                raise YamlSyntaxError(line, f"aliases copy more than {MAX_ALIASED:,} values in all (`*{event.anchor}` "
                                            f"copies {target.nodes:,}): write the values out, or use fewer aliases")
            if len(stack) + target.depth > MAX_DEPTH:
                raise YamlSyntaxError(line, f"alias `*{event.anchor}` nests values more than {MAX_DEPTH} levels "
                                            f"deep: flatten the structure")
            if parent is not None and len(stack) + target.depth > parent.deep:
                parent.deep = len(stack) + target.depth
            if is_key and type(target.value) in (dict, list):
                raise _collection_key(line)
            if path is not None:
                if parent is None or type(parent.value) is list:  # a mapping value has its key's line
                    log.append((path, target.line))
                log.extend((path + rel, ln) for rel, ln in target.lines)
            value = _copy(target.value)
        else:
            nodes += 1
            if event.tag is not None:
                raise _tagged(line, event.tag)
            if event.anchor is not None and event.anchor in anchors:
                raise YamlSyntaxError(line, f"anchor `&{event.anchor}` is defined twice (first on line "
                                            f"{anchors[event.anchor].line}): rename one")
            if path is not None and (parent is None or type(parent.value) is list):  # as above
                log.append((path, line))
            if kind is yaml.ScalarEvent:
                if not event.implicit[0]:  # quoted or block text: always a string
                    value = event.value
                elif event.value in plain:
                    value = plain[event.value]
                else:
                    value = plain[event.value] = _scalar(loader, event, line)
                if event.anchor is not None:
                    anchors[event.anchor] = _Anchored(value, [], 1, 0, line)
            else:
                if is_key:
                    raise _collection_key(line)
                if len(stack) >= MAX_DEPTH:
                    raise YamlSyntaxError(line, _TOO_DEEP)
                container: Any = {} if kind is yaml.MappingStartEvent else []
                stack.append(_Frame(container, path, line, event.anchor, len(log), nodes - 1, len(stack) + 1))
                continue
        if is_key:
            if value in parent.value:
                raise YamlSyntaxError(line, f"duplicate key `{value}`: keep only one")
            parent.key = value
            log.append((parent.path + (value,), line))
        elif parent is None:
            root = value
        else:
            _attach(parent, value)


def _attach(parent: _Frame, value: Any) -> None:
    """Put a finished value into the open list, or under the open mapping's pending key."""
    if type(parent.value) is list:
        parent.value.append(value)
    else:
        parent.value[parent.key] = value
        parent.key = _NO_KEY


def _scalar(loader: Any, event: yaml.ScalarEvent, line: int) -> Any:
    """A plain scalar's value as SafeLoader resolves it (`on` -> True, `2026-10-01` -> a date)."""
    tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == _STR:
        return event.value
    if tag == _MERGE:
        raise YamlSyntaxError(line, "merge keys `<<:` are not supported: write the keys out in this mapping")
    build = loader.yaml_constructors.get(tag)
    short = event.value if len(event.value) <= 40 else event.value[:37] + "..."
    if build is None:  # the YAML 1.1 value key `=`
        raise YamlSyntaxError(line, f"`{short}` is a YAML 1.1 special value: quote it ('{short}') to keep it as text")
    try:
        return build(loader, yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style))
    except (ValueError, OverflowError, yaml.YAMLError) as exc:
        if tag.endswith("timestamp"):
            problem = f"`{short}` is not a real date: {exc}; fix it"
        else:
            kind = _KIND.get(tag, "a value")
            problem = f"`{short}` ({len(event.value):,} characters) cannot be read as {kind}: shorten it"
        raise YamlSyntaxError(line, f"{problem}, or quote it to keep it as text") from None


def _tagged(line: int, tag: str) -> YamlSyntaxError:
    shown = "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag
    return YamlSyntaxError(line, f"tag `{shown}` is not allowed in a config: remove it (quote the value to keep "
                                 f"it as text)")


def _collection_key(line: int) -> YamlSyntaxError:
    return YamlSyntaxError(line, "a list or mapping is used as a key: keys must be plain names; check the "
                                 "indentation or remove the `?`")


def _relative(log: list[tuple[Path_, int]], start: int, path: Path_) -> list[tuple[Path_, int]]:
    """The lines logged inside the value at `path` since `start`, relative to `path`."""
    cut = len(path)
    return [(p[cut:], ln) for p, ln in log[start:]]


def _copy(value: Any) -> Any:
    """A copy of nested lists and dicts, without recursion (each alias gets its own copy)."""
    if type(value) not in (dict, list):
        return value
    top = type(value)()
    todo = [(value, top)]
    while todo:
        source, target = todo.pop()
        items = source.items() if type(source) is dict else enumerate(source)
        for key, item in items:
            if type(item) in (dict, list):
                item_copy = type(item)()
                todo.append((item, item_copy))
                item = item_copy
            if type(target) is dict:
                target[key] = item
            else:
                target.append(item)
    return top


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
