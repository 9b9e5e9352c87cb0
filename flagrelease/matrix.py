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

import yaml
from pydantic import BaseModel, ValidationError

from flagrelease.errors import ConfigError
from flagrelease.name_clash import check_unique_names
from flagrelease.schema import Cell, MatrixAxes, MatrixFile, ReleasedReference

AXES = ("chip", "model")


def load_matrix(path: Path) -> MatrixFile:
    """Parse and validate a matrix file; every problem names the file and key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"matrix file {path} does not exist",
            fix="pass --matrix PATH or run from the project root holding matrix.yaml",
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(
            f"matrix file is not valid YAML: {getattr(err, 'problem', err)}",
            where=where,
            fix="correct the YAML syntax at that line",
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError("matrix file must be a mapping with chips, models and matrix", where=str(path))
    raw = dict(raw)
    for section in ("chips", "models"):
        raw[section] = _resolve_extends(raw.get(section) or {}, section, path)
    try:
        matrix = MatrixFile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid matrix entry: {first['msg']} (got {first.get('input')!r})"
            + (f"; {len(err.errors()) - 1} more problem(s)" if len(err.errors()) > 1 else ""),
            where=f"{path}: {key}",
            fix="see the schema in docs/matrix.md and the examples in matrix.yaml",
        ) from None
    matrix.source = path.resolve()
    _check_axes(matrix, path)
    cells = expand(matrix)
    check_unique_names(cells, path)
    _check_references(matrix, cells, path)
    return matrix


def _resolve_extends(section: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """Deep-merge every entry over the block it `extends`; drop abstract `_` blocks."""
    if not isinstance(section, dict):
        raise ConfigError(f"`{name}` must be a mapping of id -> entry", where=f"{path}: {name}")

    def resolved(key: str, seen: tuple[str, ...]) -> dict[str, Any]:
        entry = section.get(key)
        if not isinstance(entry, dict):
            raise ConfigError(f"{name}.{key} must be a mapping", where=f"{path}: {name}.{'.'.join(seen) or key}")
        parent = entry.get("extends")
        body = {k: v for k, v in entry.items() if k != "extends"}
        if parent is None:
            return body
        if parent in seen or parent == key:
            raise ConfigError(f"`extends` cycle: {' -> '.join((*seen, key, parent))}", where=f"{path}: {name}.{key}")
        if parent not in section:
            raise ConfigError(
                f"{name}.{key} extends unknown block {parent!r}",
                where=f"{path}: {name}.{key}.extends",
                fix=f"define {name}.{parent} or correct the name",
            )
        return deep_merge(resolved(parent, (*seen, key)), body)

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
    for axis in AXES:
        for value in getattr(axes, axis):
            if value not in known[axis]:
                raise ConfigError(
                    f"matrix.{axis} lists {value!r}, which is not defined under {axis}s",
                    where=f"{path}: matrix.{axis}",
                    fix=f"define {axis}s.{value} or remove it; known: {', '.join(sorted(known[axis]))}",
                )
    for kind in ("include", "exclude"):
        for i, entry in enumerate(getattr(axes, kind)):
            for axis in AXES:
                if axis in entry and entry[axis] not in known[axis]:
                    raise ConfigError(
                        f"matrix.{kind}[{i}] names unknown {axis} {entry[axis]!r}",
                        where=f"{path}: matrix.{kind}[{i}].{axis}",
                        fix=f"known {axis}s: {', '.join(sorted(known[axis]))}",
                    )


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
    matches (without overwriting them); if it matches none, it is added.
    """
    combos = [dict(zip(AXES, values, strict=True)) for values in itertools.product(axes.chip, axes.model)]
    combos = [c for c in combos if not any(_matches(c, ex) for ex in axes.exclude)]
    originals = [dict(c) for c in combos]
    for entry in axes.include:
        axis_part = {k: v for k, v in entry.items() if k in AXES}
        extended = False
        for combo, original in zip(combos, originals, strict=True):
            if axis_part and _matches(original, axis_part):
                for key, value in entry.items():
                    if key not in AXES:
                        combo[key] = value
                extended = True
        if not extended:
            combos.append(dict(entry))
            originals.append(dict(entry))
    return combos


def _matches(combo: dict[str, Any], pattern: dict[str, Any]) -> bool:
    return all(combo.get(k) == v for k, v in pattern.items())


def expand(matrix: MatrixFile) -> list[Cell]:
    """Every cell of the matrix, with per-cell overrides applied and validated."""
    cells = []
    for combo in combinations(matrix.matrix):
        missing = [axis for axis in AXES if axis not in combo]
        if missing:
            raise ConfigError(
                f"matrix.include entry {combo} names no {' or '.join(missing)}",
                where=f"{matrix.source}: matrix.include",
                fix="every included cell needs both chip and model",
            )
        overrides = combo.get("overrides") or {}
        chip = _override(matrix.chips[combo["chip"]], overrides.get("chip"), matrix, combo)
        model = _override(matrix.models[combo["model"]], overrides.get("model"), matrix, combo)
        cells.append(Cell(chip_id=combo["chip"], model_id=combo["model"], chip=chip, model=model))
    return cells


def _override(entry: BaseModel, patch: dict[str, Any] | None, matrix: MatrixFile, combo: dict) -> Any:
    if not patch:
        return entry
    try:
        return type(entry).model_validate(deep_merge(entry.model_dump(), patch))
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(
            f"override for {combo['model']} x {combo['chip']} is invalid: {first['msg']}",
            where=f"{matrix.source}: matrix.include overrides.{'.'.join(map(str, first['loc']))}",
        ) from None


def select(matrix: MatrixFile, *, chip: str | None = None, model: str | None = None) -> list[Cell]:
    """Cells matching a chip id (or else a vendor family) and a model name; unknown names are errors."""
    if chip is not None and chip not in matrix.chips and chip not in {c.vendor for c in matrix.chips.values()}:
        vendors = sorted({c.vendor for c in matrix.chips.values()})
        raise ConfigError(
            f"unknown chip {chip!r}",
            where=f"{matrix.source}: chips",
            fix=f"use a chip id ({', '.join(sorted(matrix.chips))}) or a vendor ({', '.join(vendors)}), "
            "or add the chip to matrix.yaml",
        )
    if model is not None and model not in matrix.models:
        raise ConfigError(
            f"unknown model {model!r}",
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
