"""Pins written into matrix.yaml as text: comments, order and layout stay as they were.

The YAML is composed (not loaded) to find where each key sits, and only the characters of
a pin's value change; a pin a chip row inherits gets its own key in that row (a shared
block stays as it is, so chips that extend it are untouched).

    text = set_pins(text, {"ascend-a3-fl": {"vllm_plugin": "0.23.0.post1"}})
    diff = unified_diff(old, text, "matrix.yaml")
"""

from __future__ import annotations

import difflib
import json

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from flagrelease.errors import ConfigError


def set_pins(text: str, edits: dict[str, dict[str, str]], source: str = "matrix.yaml") -> str:
    """`text` with chips.<chip>.stack.<pin> set to each value of `edits`."""
    root = yaml.compose(text)
    chips = _value(root, "chips")
    if not isinstance(chips, MappingNode):
        raise ConfigError("the matrix has no `chips` mapping to patch", where=f"{source}: chips")
    changes: list[tuple[int, int, str]] = []  # (start, end, replacement), applied from the end
    for chip_id, pins in edits.items():
        entry = _value(chips, chip_id)
        if not isinstance(entry, MappingNode):
            raise ConfigError(f"chips.{chip_id} is not a mapping in the file", where=f"{source}: chips.{chip_id}")
        stack = _value(entry, "stack")
        if stack is None:
            inline = "{" + ", ".join(f"{pin}: {scalar(v)}" for pin, v in pins.items()) + "}"
            changes.append(_insert(text, entry, f"stack: {inline}"))
            continue
        if not isinstance(stack, MappingNode):
            raise ConfigError(f"chips.{chip_id}.stack is not a mapping", where=f"{source}: chips.{chip_id}.stack")
        for pin, version in pins.items():
            node = _value(stack, pin)
            if isinstance(node, ScalarNode):
                changes.append((node.start_mark.index, node.end_mark.index, scalar(version)))
            else:
                changes.append(_insert(text, stack, f"{pin}: {scalar(version)}"))
    for start, end, replacement in sorted(changes, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def scalar(value: str) -> str:
    """A YAML scalar that reads back as the string `value` ("2.2", not the float 2.2)."""
    plain = yaml.safe_load(value) if value else None
    return value if isinstance(plain, str) and plain == value and ":" not in value else json.dumps(value)


def unified_diff(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}")
    return "".join(lines)


def _value(mapping: Node, key: str) -> Node | None:
    if not isinstance(mapping, MappingNode):
        return None
    return next((v for k, v in mapping.value if isinstance(k, ScalarNode) and k.value == key), None)


def _insert(text: str, mapping: MappingNode, item: str) -> tuple[int, int, str]:
    """Where and how a new `key: value` goes into `mapping`: before the `}` of a flow mapping,
    or on its own line after the last entry of a block mapping, at the entries' indentation."""
    if mapping.flow_style:
        close = text.rindex("}", mapping.start_mark.index, mapping.end_mark.index)
        separator = ", " if mapping.value else ""
        return close, close, separator + item
    first_key = mapping.value[0][0]
    last: Node = mapping.value[-1][1]
    while isinstance(last, MappingNode) and last.value and not last.flow_style:  # its deepest last line
        last = last.value[-1][1]
    end = text.find("\n", last.end_mark.index - 1 if last.end_mark.index else 0)
    end = len(text) if end == -1 else end
    return end, end, "\n" + " " * first_key.start_mark.column + item
