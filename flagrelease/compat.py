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
from flagrelease.schema import FACT_NAMES, PLACEHOLDER, Cell, Chip, Rule

# Violations named in one error message; `flagrelease matrix` shows every one.
SHOWN = 20


class Violation(BaseModel):
    cell: str
    rule: str
    description: str
    detail: str


def facts(cell: Cell) -> dict[str, str]:
    return chip_facts(cell.chip_id, cell.chip) | {"model.id": cell.model_id}


def chip_facts(chip_id: str, chip: Chip) -> dict[str, str]:
    """The facts rules read about a chip (all but `model.id`)."""
    stack = chip.stack
    values = {
        "chip.id": chip_id,
        "chip.vendor": chip.vendor,
        "chip.chip_code": chip.chip_code,
        "chip.arch": chip.arch,
        "chip.soc_version": chip.soc_version or "none",
        "chip.driver": chip.driver,
        "sdk.name": chip.sdk.name,
        "sdk.version": chip.sdk.version,
        "base.image": chip.base.image,
        "runtime.visible_devices_env": chip.runtime.visible_devices_env or "none",
    }
    pins = {name: getattr(stack, name.removeprefix("stack.")) for name in _STACK_PINS}
    return values | pins | {"stack.launcher": stack.launcher.name}


_STACK_PINS = [name for name in FACT_NAMES if name.startswith("stack.") and name != "stack.launcher"]


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


class Checker:
    """The rules, checked over many cells with the work shared between them.

    A chip's facts are read once per chip, and each rule is decided once per distinct
    combination of the facts it reads: across 100 chips x 100 models (10,000 cells) a rule
    about chips alone is decided at most 100 times, not 10,000, and a cell costs a lookup.
    """

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self._reads = [facts_read(rule) for rule in rules]
        self._per_model = [n for n, reads in enumerate(self._reads) if "model.id" in reads]
        self._per_chip = [n for n, reads in enumerate(self._reads) if "model.id" not in reads]
        self._decided: dict[tuple[int, tuple[str, ...]], str | None] = {}
        # By chip object (kept alive here, so its id cannot be reused) and chip id: overrides
        # make chips of the same id differ between cells. Holds the facts and the
        # (rule number, detail) of every chip-only rule the chip breaks.
        self._chips: dict[tuple[int, str], tuple[Chip, dict[str, str], list[tuple[int, str]]]] = {}

    def check(self, cell: Cell) -> list[Violation]:
        key = (id(cell.chip), cell.chip_id)
        known = self._chips.get(key)
        if known is None:
            values = chip_facts(cell.chip_id, cell.chip)
            broken = [(n, d) for n in self._per_chip if (d := self._decide(n, values))]
            known = self._chips[key] = (cell.chip, values, broken)
        broken = known[2]
        if self._per_model:
            values = known[1] | {"model.id": cell.model_id}
            broken = sorted(broken + [(n, d) for n in self._per_model if (d := self._decide(n, values))])
        return [
            Violation(cell=cell.label, rule=self.rules[n].id, description=self.rules[n].description, detail=detail)
            for n, detail in broken
        ]

    def _decide(self, number: int, values: dict[str, str]) -> str | None:
        decision = (number, tuple(values[name] for name in self._reads[number]))
        if decision not in self._decided:
            self._decided[decision] = decide(self.rules[number], values)
        return self._decided[decision]


def check_cell(cell: Cell, rules: list[Rule]) -> list[Violation]:
    return Checker(rules).check(cell)


def facts_read(rule: Rule) -> tuple[str, ...]:
    req = rule.require
    names = [*rule.when, req.field, req.same_release_as, req.by]
    names += [name for name, _ in PLACEHOLDER.findall(req.contains or "")]
    return tuple(dict.fromkeys(n for n in names if n is not None))


def decide(rule: Rule, values: dict[str, str]) -> str | None:
    """Why the rule is broken by these facts, or None when it holds (or does not apply)."""
    if not all(_any(values[name], pattern) for name, pattern in rule.when.items()):
        return None
    req, actual = rule.require, values[rule.require.field]
    if req.in_ is not None and not _any(actual, req.in_):
        return f"{req.field}={actual} is not one of {req.in_}"
    if req.same_release_as is not None:
        other = values[req.same_release_as]
        if release(actual, req.parts) != release(other, req.parts):
            return f"{req.field}={actual} and {req.same_release_as}={other} differ in their first {req.parts} numbers"
    elif req.contains is not None:
        needle = _expand(req.contains, values)
        if needle not in actual:
            return f"{req.field}={actual} does not contain {needle!r}"
    elif req.table is not None and req.by is not None:  # the schema requires them together
        key = values[req.by]
        allowed = next((v for pattern, v in req.table.items() if matches(key, pattern)), None)
        if allowed is None:
            return f"{req.by}={key} is not in the table of known releases {sorted(req.table)}"
        if not _any(actual, allowed):
            return f"{req.by}={key} supports {req.field} {allowed}, not {actual}"
    return None


def ensure_compatible(cells: list[Cell], rules: list[Rule], source: str) -> None:
    """Raise one error listing every violation of every selected cell."""
    checker = Checker(rules)
    error = violation_error([v for cell in cells for v in checker.check(cell)], source)
    if error is not None:
        raise error


def violation_error(violations: list[Violation], source: str) -> ConfigError | None:
    """One error naming the violations (the first SHOWN of them), or None when there are none."""
    if not violations:
        return None
    lines = [f"{v.cell}: rule {v.rule} ({v.description}): {v.detail}" for v in violations[:SHOWN]]
    if len(violations) > SHOWN:
        lines.append(f"... and {len(violations) - SHOWN} more (flagrelease matrix lists them all)")
    return ConfigError(
        f"{len(violations)} compatibility rule violation(s):\n  " + "\n  ".join(lines),
        where=f"{source}: chips (rules under `compatibility`)",
        fix="change the offending pins, or the rule if the combination is known to work",
    )
