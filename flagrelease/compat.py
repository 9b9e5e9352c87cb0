"""Compatibility rules: data in matrix.yaml, checked for every cell before any build.

A rule applies to the cells its `when` matches and states one requirement on
a cell fact (a dotted name such as `stack.torch_npu` or `base.image`):

    - id: torch-npu-matches-torch
      when: {stack.torch_npu: "!none"}
      require: {field: stack.torch_npu, same_release_as: stack.torch, parts: 2}

Patterns are shell globs; a leading `!` negates. Requirements: `in` (one of
the patterns), `same_release_as` (first `parts` version numbers agree),
`contains` (a template such as "py{stack.python|major_minor}"; `|major_minor_nodot` gives 310), and
`table` keyed `by` another fact (the pins a torch_npu release supports).
"""

from __future__ import annotations

import fnmatch
import re

from pydantic import BaseModel

from flagrelease.errors import ConfigError
from flagrelease.schema import FACT_NAMES, PLACEHOLDER, Cell, Rule


class Violation(BaseModel):
    cell: str
    rule: str
    description: str
    detail: str


def facts(cell: Cell) -> dict[str, str]:
    chip, stack = cell.chip, cell.chip.stack
    values = {
        "chip.id": cell.chip_id,
        "chip.vendor": chip.vendor,
        "chip.chip_code": chip.chip_code,
        "chip.arch": chip.arch,
        "chip.soc_version": chip.soc_version or "none",
        "chip.driver": chip.driver,
        "sdk.name": chip.sdk.name,
        "sdk.version": chip.sdk.version,
        "base.image": chip.base.image,
        "runtime.visible_devices_env": chip.runtime.visible_devices_env or "none",
        "model.id": cell.model_id,
    }
    return values | {f"stack.{k}": v for k, v in stack.model_dump().items() if f"stack.{k}" in FACT_NAMES}


def matches(value: str, pattern: str) -> bool:
    if pattern.startswith("!"):
        return not fnmatch.fnmatchcase(value, pattern[1:])
    return fnmatch.fnmatchcase(value, pattern)


def _any(value: str, patterns: str | list[str]) -> bool:
    return any(matches(value, p) for p in ([patterns] if isinstance(patterns, str) else patterns))


def release(version: str, parts: int) -> tuple[str, ...]:
    """Leading numeric components: '2.6.0rc1' -> ('2', '6', '0')[:parts]."""
    leading = re.match(r"[\d.]*", version)  # matches every string, if only the empty prefix
    return tuple(re.findall(r"\d+", leading.group(0) if leading else ""))[:parts]


def _expand(template: str, values: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        value = values[m.group(1)]
        if not m.group(2):
            return value
        return ("" if m.group(2).endswith("_nodot") else ".").join(release(value, 2))

    return PLACEHOLDER.sub(sub, template)


def check_cell(cell: Cell, rules: list[Rule]) -> list[Violation]:
    values = facts(cell)
    found = []
    for rule in rules:
        if not all(_any(values[name], pattern) for name, pattern in rule.when.items()):
            continue
        req, actual = rule.require, values[rule.require.field]
        detail = None
        if req.in_ is not None and not _any(actual, req.in_):
            detail = f"{req.field}={actual} is not one of {req.in_}"
        elif req.same_release_as is not None:
            other = values[req.same_release_as]
            if release(actual, req.parts) != release(other, req.parts):
                detail = (
                    f"{req.field}={actual} and {req.same_release_as}={other} differ in their first {req.parts} numbers"
                )
        elif req.contains is not None:
            needle = _expand(req.contains, values)
            if needle not in actual:
                detail = f"{req.field}={actual} does not contain {needle!r}"
        elif req.table is not None and req.by is not None:  # the schema requires them together
            key = values[req.by]
            allowed = next((v for pattern, v in req.table.items() if matches(key, pattern)), None)
            if allowed is None:
                detail = f"{req.by}={key} is not in the table of known releases {sorted(req.table)}"
            elif not _any(actual, allowed):
                detail = f"{req.by}={key} supports {req.field} {allowed}, not {actual}"
        if detail:
            found.append(Violation(cell=cell.label, rule=rule.id, description=rule.description, detail=detail))
    return found


def ensure_compatible(cells: list[Cell], rules: list[Rule], source: str) -> None:
    """Raise one error listing every violation of every selected cell."""
    violations = [v for cell in cells for v in check_cell(cell, rules)]
    if violations:
        lines = [f"{v.cell}: rule {v.rule} ({v.description}): {v.detail}" for v in violations]
        raise ConfigError(
            f"{len(violations)} compatibility rule violation(s):\n  " + "\n  ".join(lines),
            where=f"{source}: chips (rules under `compatibility`)",
            fix="change the offending pins, or the rule if the combination is known to work",
        )
