"""Scenario text -> plain data with line numbers, safely and fast (docs/reliability.md).

libyaml (PyYAML's C parser, `CSafeLoader`; the pure-Python `SafeLoader` where it is missing)
turns the text into events; `parse` builds the values itself, one pass, no recursion:

* YAML 1.2 core scalars (as the scenario format always had them): `true`/`false`, `null`/`~`,
  integers (decimal, 0x, 0o, 0b, `_` separators), floats; anything quoted is a string.
* mappings become `YDict`, sequences `YList`; both keep the (0-based) line of each key / item
  in `lines`, which `vpmu.scenario.load` reads for its messages.

Hostile input is refused with a `YamlError(line, message)`, never a Python error: a file over
`MAX_BYTES`, text that is not UTF-8 (a UTF-8 BOM is skipped), YAML tags (`!!python/...`,
`!foo`), keys that are not scalars, duplicate keys, nesting deeper than `MAX_DEPTH`, integers
over `MAX_DIGITS` digits, strings with control characters or lone surrogates, and anchors whose
aliases expand the document by more than `MAX_ALIAS_EXPANSION` nodes (an alias is shared, not
copied; the bound keeps a 400-byte "billion laughs" from costing anything downstream).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

MAX_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
MAX_DIGITS = 300
MAX_ALIAS_EXPANSION = 100_000

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_INT = re.compile(r"[-+]?(?:0b[0-1_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)")
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
                    r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)")
_SPECIAL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
            "null": None, "Null": None, "NULL": None, "~": None, "": None,
            ".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
            "+.inf": float("inf"), "+.Inf": float("inf"), "+.INF": float("inf"),
            "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
            ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}
_BAD_CHAR = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class YamlError(Exception):
    """Text that is not a scenario's YAML: the 1-based line (None: the whole file) and why."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line, self.message = line, message
        super().__init__(line, message)


class YDict(dict[Any, Any]):
    """A mapping that knows the (0-based) line of each key: `d.lines[k]`."""

    __slots__ = ("lines",)
    lines: dict[Any, int]  # set by whoever makes one (no __init__: millions are made)


class YList(list[Any]):
    """A sequence that knows the (0-based) line of each item: `l.lines[i]`."""

    __slots__ = ("lines",)
    lines: list[int]


def decode(data: bytes) -> str:
    """The UTF-8 text of a scenario file (a UTF-8 BOM is skipped), or a `YamlError`."""
    if len(data) > MAX_BYTES:
        raise YamlError(None, f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise YamlError(line, f"not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})") from None


def _plain(value: str, line: int) -> Any:
    """A plain (unquoted) scalar by the YAML 1.2 core schema."""
    if value in _SPECIAL:
        return _SPECIAL[value]
    first = value[:1]
    if first.isdigit() or (first in "+-." and len(value) > 1):
        if _INT.fullmatch(value):
            text = value.replace("_", "")
            if len(text) > MAX_DIGITS:
                raise YamlError(line, f"integer of more than {MAX_DIGITS} digits")
            sign = -1 if text[0] == "-" else 1
            body = text.lstrip("+-")
            base = {"0b": 2, "0o": 8, "0x": 16}.get(body[:2], 10)
            return sign * int(body[2:] if base != 10 else body, base)
        if _FLOAT.fullmatch(value):
            if len(value) > MAX_DIGITS:
                raise YamlError(line, f"number of more than {MAX_DIGITS} digits")
            return float(value.replace("_", ""))
    return value


def _check_text(text: str) -> None:
    """Refuse raw control characters (beyond tab and newline), C1 controls, line separators
    and lone surrogates anywhere in the file; escapes in double-quoted strings are checked
    where they are decoded."""
    bad = _BAD_CHAR.search(text.replace("\r\n", "\n"))
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise YamlError(line, f"control character or lone surrogate U+{ord(bad.group()):04X} in the text")


def parse(text: str) -> Any:
    """The one YAML document in `text` as plain data (`YDict`, `YList`, scalars); see the
    module docstring for what is refused."""
    try:
        with no_gc():
            return _build(text)
    except yaml.MarkedYAMLError as e:
        if e.context and ("anchor" in e.context or "alias" in e.context):
            renamed = _DOTTED_NAME.sub(_undot, text)
            if renamed != text:  # libyaml's names have no dots; ruamel's had (`&as-6.6`)
                return parse(renamed)
        mark = e.problem_mark or e.context_mark
        what = e.problem or "syntax error"
        if e.context and ("anchor" in e.context or "alias" in e.context):
            what += f" {e.context} (anchor names may use letters, digits, '-' and '_')"
        raise YamlError(mark.line + 1 if mark is not None else None, f"not valid YAML: {what}") from None
    except yaml.YAMLError as e:  # a reader error (a character YAML does not allow)
        raise YamlError(None, f"not valid YAML: {str(e).splitlines()[0]}") from None


@contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: building many new acyclic objects (a large file's
    data) otherwise triggers full collections that rescan everything built so far."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build(text: str) -> Any:  # noqa: C901 - one loop over the events, kept flat for speed
    _check_text(text)
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    mapping_end, sequence_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    stream_end, document_start = yaml.StreamEndEvent, yaml.DocumentStartEvent
    special, bad_char, no_key = _SPECIAL, _BAD_CHAR, _NO_KEY
    loader = _Loader(text)
    get_event = loader.get_event
    # per open collection: the container, its pending key (mappings), the key's line, the
    # node count when it started, its anchor, its line, its `lines` and whether it is a list
    stack: list[list[Any]] = []
    anchors: dict[str, tuple[Any, int]] = {}
    numbers: dict[str, Any] = {}  # plain scalars read as numbers, by their text
    root: Any = None
    documents = 0
    nodes = 0  # nodes so far, aliases counted expanded
    expanded = 0  # of which through aliases
    top: list[Any] | None = None
    try:
        while True:
            ev = get_event()
            kind = type(ev)
            if kind is scalar_event:
                nodes += 1
                tag = ev.tag
                if tag is not None and tag != "!":
                    raise YamlError(ev.start_mark.line + 1, f"YAML tags are not allowed ({tag[:40]})")
                value: Any = ev.value
                if ev.implicit[0]:
                    if value in special:
                        value = special[value]
                    elif value[:1] in _NUMERIC_START:
                        known = numbers.get(value, no_key)
                        value = numbers.setdefault(value, _plain(value, ev.start_mark.line + 1)) \
                            if known is no_key else known
                elif ev.style == '"' and bad_char.search(value):
                    raise YamlError(ev.start_mark.line + 1, "control character or lone surrogate in a string")
                if ev.anchor is not None:
                    anchors[ev.anchor] = (value, 1)
            elif kind is mapping_start or kind is sequence_start:
                line = ev.start_mark.line
                if ev.tag is not None and ev.tag != "!":
                    raise YamlError(line + 1, f"YAML tags are not allowed ({ev.tag[:40]})")
                if top is not None and top[1] is no_key and type(top[0]) is YDict:
                    raise YamlError(line + 1, "a mapping key must be a plain value, not a mapping or list")
                if len(stack) >= MAX_DEPTH:
                    raise YamlError(line + 1, f"nested deeper than {MAX_DEPTH} levels")
                nodes += 1
                new: Any = YDict() if kind is mapping_start else YList()
                new.lines = {} if kind is mapping_start else []
                top = [new, no_key, 0, nodes - 1, ev.anchor, line, new.lines, kind is sequence_start]
                stack.append(top)
                continue
            elif kind is mapping_end or kind is sequence_end:
                value, _, _, first, anchor, line, _, _ = stack.pop()
                top = stack[-1] if stack else None
                if anchor is not None:
                    anchors[anchor] = (value, nodes - first)
                if top is None:
                    root = value
                    continue
                if top[7]:
                    top[0].append(value)
                    top[6].append(line)
                else:  # a collection is never a key (refused at its start)
                    top[0][top[1]] = value
                    top[6][top[1]] = top[2]
                    top[1] = no_key
                continue
            elif kind is alias_event:
                if ev.anchor not in anchors:
                    raise YamlError(ev.start_mark.line + 1, f"alias *{ev.anchor[:40]} names no anchor")
                value, size = anchors[ev.anchor]
                nodes += size
                expanded += size
                if expanded > MAX_ALIAS_EXPANSION:
                    raise YamlError(ev.start_mark.line + 1,
                                    f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} nodes")
            elif kind is stream_end:
                break
            else:  # stream and document start/end
                if kind is document_start:
                    documents += 1
                    if documents > 1:
                        raise YamlError(ev.start_mark.line + 1, "expected one YAML document, found a second")
                continue
            # a scalar or an alias: the root, a list item, a key or a value
            if top is None:
                root = value
                continue
            container = top[0]
            if top[7]:
                container.append(value)
                top[6].append(ev.start_mark.line)
            elif top[1] is no_key:
                if kind is alias_event and isinstance(value, dict | list):
                    raise YamlError(ev.start_mark.line + 1, "a mapping key must be a plain value, not a collection")
                if value in container:
                    raise YamlError(ev.start_mark.line + 1, f"duplicate key {str(value)[:40]!r}")
                top[1], top[2] = value, ev.start_mark.line
            else:
                container[top[1]] = value
                top[6][top[1]] = top[2]
                top[1] = no_key
    finally:
        loader.dispose()
    return root


_NUMERIC_START = frozenset("0123456789+-.")


def _undot(m: re.Match[str]) -> str:
    """An anchor or alias name with its dots renamed, unless it is inside quotes or a comment."""
    before = m.string[m.string.rfind("\n", 0, m.start()) + 1:m.start()]
    if before.count('"') % 2 or before.count("'") % 2 or "#" in before:
        return m.group(0)
    return m.group(0).replace(".", "_DOT_")


#: an anchor or alias whose name has a dot, where YAML puts one (renamed consistently: a name
#: only pairs an alias with its anchor)
_DOTTED_NAME = re.compile(r"(?<![^\s\[{,])[&*][A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*")
_NO_KEY: Any = object()
