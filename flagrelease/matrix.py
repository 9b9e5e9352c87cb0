"""Load, validate and expand matrix.yaml into cells.

The file has three parts: `chips`, `models` and `matrix` (axes with GitHub
Actions include/exclude). Entries whose name starts with `_` are abstract
blocks that others `extends:` (as bake's `inherits`); only the differences
are written in the concrete rows.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flagrelease.errors import ConfigError, did_you_mean, excerpt
from flagrelease.input_files import load_yaml
from flagrelease.name_clash import check_unique_names
from flagrelease.schema import (
    Cell,
    CellOverrides,
    Chip,
    ExcludeEntry,
    IncludeEntry,
    MatrixAxes,
    MatrixFile,
    Model,
    ReleasedReference,
)
from flagrelease.validation import config_error

AXES = ("chip", "model")
# `extends` chains longer than this are a mistake (or an attack on the merge's cost).
MAX_EXTENDS_DEPTH = 32
SCHEMA_FIX = "see the schema in docs/matrix.md and the examples in matrix.yaml"


def load_matrix(path: Path) -> MatrixFile:
    """Parse and validate a matrix file; every problem names the file and key."""
    path = Path(path)
    raw = load_yaml(path, "matrix file", missing_fix="pass --matrix PATH, or run where ./matrix.yaml is")
    if raw is None:
        raise ConfigError(f"matrix file {path} is empty", where=str(path), fix=SCHEMA_FIX)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"matrix file must be a mapping with chips, models and matrix, not {type(raw).__name__}",
            where=str(path),
            fix=SCHEMA_FIX,
        )
    raw = dict(raw)
    for section in ("chips", "models"):
        if section in raw:
            raw[section] = _resolve_extends(raw[section] or {}, section, path)
    try:
        matrix = MatrixFile.model_validate(raw)
    except ValidationError as err:
        raise config_error(err, MatrixFile, what="matrix entry", where=str(path), fix=SCHEMA_FIX) from None
    matrix.source = path.resolve()
    _check_axes(matrix, path)
    cells = expand(matrix)
    check_unique_names(cells, path)
    _check_references(matrix, cells, path)
    return matrix


def _resolve_extends(section: Any, name: str, path: Path) -> dict[Any, Any]:
    """Deep-merge every entry over the block it `extends`; drop abstract `_` blocks."""
    if not isinstance(section, dict):
        raise ConfigError(
            f"`{name}` must be a mapping of id -> entry, not {type(section).__name__}",
            where=f"{path}: {name}",
            fix=SCHEMA_FIX,
        )
    done: dict[Any, dict[str, Any]] = {}

    def resolved(key: Any, chain: tuple[Any, ...]) -> dict[str, Any]:
        if key in done:
            return done[key]
        entry = section[key]
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{name}.{key} must be a mapping, not {type(entry).__name__} (got {excerpt(entry)})",
                where=f"{path}: {name}.{key}",
                fix=SCHEMA_FIX,
            )
        parent = entry.get("extends")
        body = {k: v for k, v in entry.items() if k != "extends"}
        if parent is None:
            done[key] = body
            return body
        if not isinstance(parent, str):
            raise ConfigError(
                f"{name}.{key}.extends must be the id of one {name[:-1]} or block, not "
                f"{type(parent).__name__} (got {excerpt(parent)})",
                where=f"{path}: {name}.{key}.extends",
                fix="write one id, e.g. `extends: _ascend`; to combine blocks, let one block extend the other",
            )
        if parent in chain or parent == key:
            raise ConfigError(
                f"`extends` cycle: {' -> '.join(map(str, (*chain, key, parent)))}",
                where=f"{path}: {name}.{key}.extends",
                fix="an entry may not extend itself, directly or through the blocks it extends",
            )
        if parent not in section:
            raise ConfigError(
                f"{name}.{key} extends unknown block {excerpt(parent)}{did_you_mean(parent, map(str, section))}",
                where=f"{path}: {name}.{key}.extends",
                fix=f"define {name}.{parent} or correct the name",
            )
        if len(chain) >= MAX_EXTENDS_DEPTH:
            raise ConfigError(
                f"{name}.{key}: `extends` chain longer than {MAX_EXTENDS_DEPTH}",
                where=f"{path}: {name}.{key}.extends",
                fix="extend shared blocks directly instead of chaining entries",
            )
        done[key] = deep_merge(resolved(parent, (*chain, key)), body)
        return done[key]

    return {key: resolved(key, ()) for key in section if not str(key).startswith("_")}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; any other value in `over` replaces the base value."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_axes(matrix: MatrixFile, path: Path) -> None:
    known: dict[str, set[str]] = {"chip": set(matrix.chips), "model": set(matrix.models)}
    axes = matrix.matrix

    def check(value: str, axis: str, key: str) -> None:
        if value not in known[axis]:
            raise ConfigError(
                f"{key} names {excerpt(value)}, which is not defined under {axis}s{did_you_mean(value, known[axis])}",
                where=f"{path}: {key}",
                fix=f"define {axis}s.{value} or correct the name; known: {', '.join(sorted(known[axis]))}",
            )

    for axis in AXES:
        values = getattr(axes, axis)
        for i, value in enumerate(values):
            check(value, axis, f"matrix.{axis}[{i}]")
            if value in values[:i]:
                raise ConfigError(
                    f"matrix.{axis} lists {value!r} twice", where=f"{path}: matrix.{axis}[{i}]", fix="drop one"
                )
    for kind in ("include", "exclude"):
        for i, entry in enumerate(getattr(axes, kind)):
            for axis in AXES:
                value = getattr(entry, axis)
                if value is not None:
                    check(value, axis, f"matrix.{kind}[{i}].{axis}")


def _check_references(matrix: MatrixFile, cells: list[Cell], path: Path) -> None:
    """A released reference must be a cell of this matrix: only a cell gets released."""
    known = {(c.model_id, c.chip_id) for c in cells}
    for cell in cells:
        reference = cell.model.bench.reference
        if isinstance(reference, ReleasedReference) and (reference.model or cell.model_id, reference.chip) not in known:
            model = reference.model or cell.model_id
            raise ConfigError(
                f"{cell.label} is gated against the released cell {model} x {reference.chip}, "
                "which is not a cell of the matrix",
                where=f"{path}: models.{cell.model_id}.bench.reference",
                fix=f"add {model} x {reference.chip} to the matrix (matrix.chip/model or include), "
                "or name a published baseline file",
            )


def combinations(axes: MatrixAxes) -> list[dict[str, Any]]:
    """GitHub Actions matrix semantics: product, minus `exclude`, then `include`.

    An exclude entry removes every combination it matches on all its keys.
    An include entry extends each combination whose original axis values it
    matches (here: attaches its `overrides`, without touching the axes); if it
    matches none, it is added as a new combination.
    """
    excludes = [_axis_values(entry) for entry in axes.exclude]
    combos: list[dict[str, Any]] = [
        {"chip": chip, "model": model}
        for chip, model in itertools.product(axes.chip, axes.model)
        if not any(_matches({"chip": chip, "model": model}, ex) for ex in excludes)
    ]
    # The original combinations by every pattern an include entry can be: by chip, by model,
    # by both; an include then finds its matches without scanning every combination.
    index: dict[tuple[tuple[str, str], ...], list[int]] = {}

    def remember(i: int, original: dict[str, str]) -> None:
        for keys in (("chip",), ("model",), AXES):
            if all(k in original for k in keys):
                index.setdefault(tuple((k, original[k]) for k in keys), []).append(i)

    for i, combo in enumerate(combos):
        remember(i, combo)
    for entry in axes.include:
        pattern = _axis_values(entry)
        matched = index.get(tuple(pattern.items()), [])
        for i in matched:
            if entry.overrides is not None:
                combos[i]["overrides"] = entry.overrides
        if not matched:
            combos.append(pattern | ({"overrides": entry.overrides} if entry.overrides is not None else {}))
            remember(len(combos) - 1, pattern)
    return combos


def _axis_values(entry: IncludeEntry | ExcludeEntry) -> dict[str, str]:
    return {axis: value for axis in AXES if (value := getattr(entry, axis)) is not None}


def _matches(combo: dict[str, Any], pattern: dict[str, Any]) -> bool:
    return all(combo.get(k) == v for k, v in pattern.items())


def expand(matrix: MatrixFile) -> list[Cell]:
    """Every cell of the matrix, with per-cell overrides applied and validated."""
    cells = []
    # One include entry's overrides apply to many cells: merge and validate each pair once.
    overridden: dict[tuple[int, int], Any] = {}
    for combo in combinations(matrix.matrix):
        missing = [axis for axis in AXES if axis not in combo]
        if missing:
            raise ConfigError(
                f"matrix.include entry {excerpt(combo)} names no {' or '.join(missing)}",
                where=f"{matrix.source}: matrix.include",
                fix="every included cell needs both chip and model",
            )
        chip: Chip = matrix.chips[combo["chip"]]
        model: Model = matrix.models[combo["model"]]
        overrides: CellOverrides | None = combo.get("overrides")
        if overrides is not None:
            chip = _override(chip, overrides, "chip", matrix, overridden)
            model = _override(model, overrides, "model", matrix, overridden)
        # Every part is validated already (ids are keys of chips/models, checked against the
        # axes); validating 10,000 cells again would cost a tenth of a second for nothing.
        cells.append(Cell.model_construct(chip_id=combo["chip"], model_id=combo["model"], chip=chip, model=model))
    return cells


def _override(entry: Any, overrides: CellOverrides, kind: str, matrix: MatrixFile, done: dict) -> Any:
    patch = getattr(overrides, kind)
    if not patch:
        return entry
    key = (id(entry), id(patch))
    if key not in done:
        try:
            done[key] = (type(entry).model_validate(deep_merge(entry.model_dump(), patch)), entry, patch)
        except ValidationError as err:
            number = next(i for i, e in enumerate(matrix.matrix.include) if e.overrides is overrides)
            raise config_error(
                err,
                type(entry),
                what=f"override of a {kind}",
                where=str(matrix.source),
                prefix=("matrix", "include", number, "overrides", kind),
                fix=SCHEMA_FIX,
            ) from None
    return done[key][0]


def select(matrix: MatrixFile, *, chip: str | None = None, model: str | None = None) -> list[Cell]:
    """Cells matching a chip id (or else a vendor family) and a model name; unknown names are errors."""
    if chip is not None and chip not in matrix.chips and chip not in {c.vendor for c in matrix.chips.values()}:
        vendors = sorted({c.vendor for c in matrix.chips.values()})
        raise ConfigError(
            f"unknown chip {excerpt(chip)}{did_you_mean(chip, [*matrix.chips, *vendors])}",
            where=f"{matrix.source}: chips",
            fix=f"use a chip id ({', '.join(sorted(matrix.chips))}) or a vendor ({', '.join(vendors)}), "
            "or add the chip to matrix.yaml",
        )
    if model is not None and model not in matrix.models:
        raise ConfigError(
            f"unknown model {excerpt(model)}{did_you_mean(model, matrix.models)}",
            where=f"{matrix.source}: models",
            fix=f"use one of: {', '.join(sorted(matrix.models))}, or add the model to matrix.yaml",
        )
    # An exact chip id wins over a vendor family of the same name (chip `cpu` vs vendor `cpu`).
    chips = (
        None
        if chip is None
        else ({chip} if chip in matrix.chips else {i for i, c in matrix.chips.items() if c.vendor == chip})
    )
    cells = [
        c for c in expand(matrix) if (chips is None or c.chip_id in chips) and (model is None or c.model_id == model)
    ]
    if not cells:
        raise ConfigError(
            f"the matrix has no cell for model={model or '*'} chip={chip or '*'} (excluded or not listed)",
            where=f"{matrix.source}: matrix",
            fix="add the pair to matrix.chip/matrix.model or matrix.include, or drop it from matrix.exclude",
        )
    return cells


def find_matrix(explicit: Path | None) -> Path:
    """The matrix to use: --matrix, else ./matrix.yaml, else the one shipped with the project."""
    if explicit is not None:
        return explicit
    local = Path.cwd() / "matrix.yaml"
    if local.exists():
        return local
    return Path(__file__).resolve().parent.parent / "matrix.yaml"
