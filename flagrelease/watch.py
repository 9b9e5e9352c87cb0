"""Upstream watch: newer releases of the pins chips install from a package index, turned into
candidate rows that satisfy every compatibility rule, or the rule that blocks them. Pure.

For each chip of the matrix, its index pins (`stack.from_index`, less `none` and `sources`)
move as far as the rules allow: pins are taken in their declared order, each tries its
releases newest first (then its current pin), and the first assignment of all of them that
breaks no rule for any of the chip's cells is the candidate. A pin that cannot reach its
newest release is reported with the rules that release breaks beside the candidate's other
pins. Rules that speak about pins not yet assigned wait for them, so the search prunes early.

    candidates = propose(matrix, cells, releases)   # releases: project -> ProjectFiles | None
"""

from __future__ import annotations

from typing import Literal

from packaging.version import Version
from pydantic import BaseModel

from flagrelease.compat import chip_facts, decide, facts_read
from flagrelease.index_pins import IndexPin, ProjectFiles, fits, index_pins, parse_version
from flagrelease.schema import Cell, Chip, Rule

# Releases newer than a pin that the search considers per pin, newest first (a pin whose
# newest releases all break a rule may still move to an older one among them).
MAX_OPTIONS = 64
# Assignments the search may visit per chip before it settles for what it found.
MAX_NODES = 50_000

Status = Literal["current", "newest", "newer", "blocked", "not-on-index", "not-pep440"]


class Blocker(BaseModel):
    rule: str
    detail: str


class PinNews(BaseModel):
    """One watched pin of one chip: what the index has, and what the candidate does with it."""

    chip: str
    pin: str
    project: str
    key: str  # chips.<chip>.stack.<pin>
    pinned: str
    # The newest release on the index that the chip's image can install (its python and platform;
    # pre-releases per `watch.prereleases`).
    newest: str | None = None
    proposed: str | None = None  # what the candidate moves the pin to, when it moves
    status: Status
    # Why the newest release is not the candidate's: the rules it breaks beside the others.
    blocked_by: list[Blocker] = []


class Candidate(BaseModel):
    """A chip row with moved pins: every cell of the chip on the newer stack."""

    chip: str
    changes: dict[str, tuple[str, str]]  # pin -> (pinned, proposed)
    cells: list[str]
    # The search stopped at MAX_NODES: the candidate is the best found, not proven the newest.
    partial: bool = False


def newer_releases(files: ProjectFiles, pin: IndexPin, pinned: Version, prereleases: bool) -> list[str]:
    """Releases after `pinned` with a file the pin's image can install (its python and platform),
    newest first; pre-releases only when asked for."""
    installable = {parse_version(f.version) for f in files.files if not f.yanked and fits(f, pin.python, pin.arch)}
    releases = files.releases()
    newer = [v for v in releases if v > pinned and v in installable and (prereleases or not v.is_prerelease)]
    return [releases[v] for v in sorted(newer, reverse=True)]


def propose(
    chip_cells: dict[str, list[Cell]], rules: list[Rule], releases: dict[str, ProjectFiles | None], prereleases: bool
) -> tuple[list[PinNews], list[Candidate]]:
    """Every watched pin's news, and one candidate per chip that has a pin to move."""
    news: list[PinNews] = []
    candidates: list[Candidate] = []
    for chip_id, cells in chip_cells.items():
        chip = cells[0].chip
        pins = index_pins(chip_id, chip)
        options: dict[str, list[str]] = {}
        rows: dict[str, PinNews] = {}
        for pin in pins:
            rows[pin.pin], newer = _news(pin, releases.get(pin.project), prereleases)
            options[pin.pin] = [*newer[:MAX_OPTIONS], pin.version]
        found, partial = _search(chip_id, chip, [c.model_id for c in cells], rules, options)
        for pin in pins:
            row = rows[pin.pin]
            if row.newest is not None:
                if found[pin.pin] != pin.version:
                    row.proposed = found[pin.pin]
                    row.status = "newest" if found[pin.pin] == row.newest else "newer"
                if found[pin.pin] != row.newest:
                    row.blocked_by = _blockers(chip_id, chip, found | {pin.pin: row.newest}, cells, rules)
                    if row.proposed is None:
                        row.status = "blocked"
            news.append(row)
        changes = {p.pin: (p.version, found[p.pin]) for p in pins if found[p.pin] != p.version}
        if changes:
            candidates.append(Candidate(chip=chip_id, changes=changes, cells=[c.label for c in cells], partial=partial))
    return news, candidates


def _news(pin: IndexPin, files: ProjectFiles | None, prereleases: bool) -> tuple[PinNews, list[str]]:
    row = PinNews(chip=pin.chip, pin=pin.pin, project=pin.project, key=pin.key, pinned=pin.version, status="current")
    pinned = parse_version(pin.version)
    if files is None:
        row.status = "not-on-index"
        return row, []
    if pinned is None:
        row.status = "not-pep440"
        return row, []
    newer = newer_releases(files, pin, pinned, prereleases or pinned.is_prerelease)
    row.newest = newer[0] if newer else None
    return row, newer


def _search(
    chip_id: str, chip: Chip, models: list[str], rules: list[Rule], options: dict[str, list[str]]
) -> tuple[dict[str, str], bool]:
    """The first assignment (pins in order, each newest first) that breaks no rule; and whether
    the search stopped at MAX_NODES (then the current pins of what was not decided)."""
    order = list(options)
    facts = chip_facts(chip_id, chip)
    # Rules decidable once the first k pins are assigned: those reading no later watched pin.
    reads = [set(facts_read(rule)) for rule in rules]
    due: list[list[int]] = [[] for _ in range(len(order) + 1)]
    for n, read in enumerate(reads):
        later = [i for i, pin in enumerate(order) if f"stack.{pin}" in read]
        due[max(later) + 1 if later else 0].append(n)
    values = [facts | {"model.id": model} for model in models]
    visited = 0

    def holds(depth: int) -> bool:
        return all(decide(rules[n], v) is None for n in due[depth] for v in values)

    def assign(depth: int) -> bool:
        nonlocal visited
        if depth == len(order):
            return True
        pin = order[depth]
        for version in options[pin]:
            visited += 1
            if visited > MAX_NODES:
                return False
            for v in values:
                v[f"stack.{pin}"] = version
            if holds(depth + 1) and assign(depth + 1):
                return True
        return False

    if not holds(0) or not assign(0):
        # Nothing (or nothing within the budget) beside the current pins: keep them.
        return {pin: facts[f"stack.{pin}"] for pin in order}, visited > MAX_NODES
    return {pin: values[0][f"stack.{pin}"] for pin in order}, False


def _blockers(
    chip_id: str, chip: Chip, assignment: dict[str, str], cells: list[Cell], rules: list[Rule]
) -> list[Blocker]:
    """The rules `assignment` breaks for any cell of the chip, each once."""
    facts = chip_facts(chip_id, chip) | {f"stack.{pin}": version for pin, version in assignment.items()}
    found: dict[str, Blocker] = {}
    for cell in cells:
        for rule in rules:
            detail = decide(rule, facts | {"model.id": cell.model_id})
            if detail is not None and rule.id not in found:
                found[rule.id] = Blocker(rule=rule.id, detail=detail)
    return list(found.values())
