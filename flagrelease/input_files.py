"""Reading the files users hand us (matrix, baselines, release records) with bounded work.

A file is refused before it is parsed when it is too large, not a regular file or not
UTF-8 text; YAML is composed into its node graph first and refused when its aliases
would expand it beyond a fixed number of nodes (a "billion laughs" document is a few
hundred bytes that expand to gigabytes once merged, validated or printed). Only then is
it turned into Python data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flagrelease.errors import ConfigError

MAX_FILE_BYTES = 4 * 1024 * 1024
# A 10,000-cell matrix is about 5,000 nodes; ordinary YAML aliases stay far below these.
MAX_ALIASES = 10_000
MAX_NODES = 500_000
MAX_DEPTH = 64


def read_bytes(path: Path, what: str, *, missing_fix: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, at most `max_bytes`; every failure a ConfigError naming the file."""
    fix = missing_fix or f"pass the path of the {what} file"
    try:
        if path.is_dir():
            raise ConfigError(f"{what} {path} is a directory, not a file", where=str(path), fix=fix)
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", where=str(path), fix=fix) from None
    except OSError as err:
        raise ConfigError(
            f"cannot read {what} {path}: {err.strerror or err}",
            where=str(path),
            fix="check that the path is a file you may read",
        ) from None
    if len(data) > max_bytes:
        raise ConfigError(
            f"{what} {path} is larger than {max_bytes // (1024 * 1024)} MiB",
            where=str(path),
            fix=f"is this the right file? a {what} is far smaller",
        )
    return data


def read_text(path: Path, what: str, *, missing_fix: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> str:
    data = read_bytes(path, what, missing_fix=missing_fix, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {err.start} is 0x{data[err.start]:02x})",
            where=f"{path}: byte {err.start}",
            fix=f"pass the {what} itself, saved as UTF-8 text",
        ) from None


def load_yaml(path: Path, what: str, *, missing_fix: str | None = None) -> Any:
    """Parse a YAML file with bounded size, alias count, expanded size and nesting depth."""
    text = read_text(path, what, missing_fix=missing_fix)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(
            f"{what} is not valid YAML: {getattr(err, 'problem', None) or err}",
            where=f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path),
            fix="correct the YAML syntax at that line",
        ) from None
    except _TooLarge as err:
        raise ConfigError(
            f"{what} {err}; refused before validation",
            where=str(path),
            fix=f"write the entries out (share them with `extends`, not nested YAML aliases), at most {MAX_DEPTH} deep",
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{what} nests deeper than this parser can follow", where=str(path), fix="flatten the document"
        ) from None
    finally:
        loader.dispose()


class _TooLarge(Exception):
    pass


# libyaml's parser when PyYAML has it: ten times faster on a large file, and it refuses
# nesting beyond its own limit instead of recursing. Both only compose here: an alias is
# a second reference to one node, so composing costs what the text costs.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the nodes the document has once every alias is expanded (each distinct node
    visited once, its size counted once per reference), and the alias references; refuse
    cycles and deep nesting."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    aliases = 0

    def size(node: yaml.Node, depth: int) -> int:
        nonlocal aliases
        key = id(node)
        if key in sizes:
            aliases += 1  # a node reached again: only an alias does that
            if aliases > MAX_ALIASES:
                raise _TooLarge(f"uses more than {MAX_ALIASES} YAML aliases")
            return sizes[key]
        if key in open_nodes:
            raise _TooLarge("has an alias that refers to itself (a recursive structure)")
        if depth > MAX_DEPTH:
            raise _TooLarge(f"nests deeper than {MAX_DEPTH} levels")
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise _TooLarge(f"expands to more than {MAX_NODES} YAML nodes through its aliases")
        sizes[key] = total
        return total

    size(root, 0)
