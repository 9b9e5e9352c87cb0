"""Image names and tags in the FlagRelease scheme, within the OCI limits.

flagrelease-<vendor>-release-model_<m>-tree_<t>-gems_<g>-scale_<s>-cx_<c>-python_<py>
-torch_<torch|npu+torch_npu>-pcp_<sdk+ver>-gpu_<chipcode>-arc_<arch>-driver_<drv>:<YYMMDDHHMM>

How each pin is spelled is data (`chips.<id>.spelling`), and so is the timestamp format of
the release tag (`release.timestamp`: YYMMDDHHMM, as the reference card, or YYYYMMDDHHMM).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

from flagrelease.cell_facts import chip_pins
from flagrelease.errors import ConfigError
from flagrelease.schema import NONE, Cell, Chip, SpelledPin, TimestampFormat

# distribution/reference: path components, tags, and the 255-character name limit.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# The release tag formats published FlagRelease names use; a tag's length tells which it is.
TIMESTAMP_FORMATS: dict[TimestampFormat, str] = {"YYMMDDHHMM": "%y%m%d%H%M", "YYYYMMDDHHMM": "%Y%m%d%H%M"}
NAME_MAX = 255


@functools.lru_cache(maxsize=4096)  # a pure function of its text; called per pin of every cell planned
def tag_version(version: str) -> str:
    """A pin as it appears in a tag by default (`{value|compact_rc}`): lowercase, `+`->`.`, and
    the dot before `rc` dropped as PEP 440 normalises it (CANN 8.2.rc1.alpha002 -> 8.2rc1.alpha002)."""
    return _compact_rc(_as_written(version))


def _as_written(version: str) -> str:
    """`{value}`: the pin as written, made valid in a name (lowercase, `+`->`.`)."""
    return version.lower().replace("+", ".")


def _compact_rc(version: str) -> str:
    return re.sub(r"[.\-_](rc\d)", r"\1", version)


DEFAULT_SPELLING = "{value|compact_rc}"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)(\|compact_rc)?\}")


def spelled(chip_id: str, chip: Chip, pin: SpelledPin) -> str:
    """How a pin appears in the image names of the chip's cells: the chip's declared spelling
    of it (`chips.<id>.spelling.<pin>`), else today's rule, `{value|compact_rc}`."""
    return _spell(chip, chip_pins(chip_id, chip), pin)


def _spell(chip: Chip, values: dict[str, str], pin: SpelledPin) -> str:
    def fill(match: re.Match[str]) -> str:
        name, compact = match.groups()
        written = _as_written(values[pin if name == "value" else name])
        return _compact_rc(written) if compact else written

    return _PLACEHOLDER.sub(fill, chip.spelling.get(pin, DEFAULT_SPELLING))


def repository_name(cell: Cell) -> str:
    """The image name FlagRelease gives this cell (without registry and tag)."""
    return image_name(cell, "release", name_fields(cell))


def stack_repository_name(cell: Cell) -> str:
    """The name of the cell's chip-stack image: the release name without the model."""
    return image_name(cell, "stack", name_fields(cell, model=False))


def set_key(cell: Cell) -> str:
    """Cells that differ only in arch form one multi-arch set, published all or nothing: the
    release name without its `arc_` field."""
    return image_name(cell, "release", [(k, v) for k, v in name_fields(cell) if k != "arc"])


def name_fields(cell: Cell, *, model: bool = True) -> list[tuple[str, str]]:
    """The `<field>_<value>` parts of the cell's image name, in order (the stack's: no model)."""
    stack = stack_fields(cell.chip_id, cell.chip)
    return [("model", cell.model_id), *stack] if model else stack


def stack_fields(chip_id: str, chip: Chip) -> list[tuple[str, str]]:
    """The name's fields that come from the chip alone: every field but the model."""
    values = chip_pins(chip_id, chip)

    def spell(pin: SpelledPin) -> str:
        return _spell(chip, values, pin)

    torch = "npu" + spell("torch_npu") if chip.stack.torch_npu != NONE else spell("torch")
    return [
        ("tree", spell("flagtree")),
        ("gems", spell("flaggems")),
        ("scale", spell("flagscale")),
        ("cx", spell("flagcx")),
        ("python", spell("python")),
        ("torch", torch),
        ("pcp", NONE if chip.sdk.name == NONE else chip.sdk.name + spell("sdk_version")),
        ("gpu", spell("chip_code")),
        ("arc", chip.arch),
        ("driver", spell("driver")),
    ]


def image_name(cell: Cell, kind: str, fields: list[tuple[str, str]]) -> str:
    name = f"flagrelease-{cell.chip.vendor}-{kind}-" + "-".join(f"{k}_{v}" for k, v in fields)
    name = re.sub(r"-{2,}", "-", re.sub(r"_{2,}", "_", name))
    if not _COMPONENT.match(name):
        raise ConfigError(
            f"image name {name!r} is not a valid OCI repository component",
            where=f"cell {cell.label}",
            fix="pins may hold only letters, digits, '.', '_' and '-'",
        )
    return name


def key_tag(key: str) -> str:
    """The tag naming an image by its key (release key or chip-stack key) in its repository."""
    return "key-" + key


def is_release_tag(tag: str) -> bool:
    """A timestamp release tag, in either format FlagRelease has published (10 or 12 digits)."""
    return release_time(tag) is not None


def release_time(tag: str) -> datetime | None:
    """When a release tag was made (UTC), or None for any other tag. Sort release tags by
    this: `2512101714` (YYMMDDHHMM) and `202601050930` (YYYYMMDDHHMM) do not sort as text."""
    for name, strftime in TIMESTAMP_FORMATS.items():
        if len(tag) == len(name) and tag.isdigit():
            try:
                return datetime.strptime(tag, strftime).replace(tzinfo=UTC)
            except ValueError:
                return None
    return None


def newest_release_tags(tags: list[str]) -> list[str]:
    """The release tags among `tags`, newest first, whichever timestamp format each has."""
    dated = [(when, tag) for tag in tags if (when := release_time(tag)) is not None]
    return [tag for _, tag in sorted(dated, reverse=True)]


def timestamp_tag(now: datetime | None = None, timestamp: TimestampFormat = "YYMMDDHHMM") -> str:
    """FlagRelease's release tag: UTC time as `release.timestamp` says (the reference card's
    YYMMDDHHMM by default; FlagRelease's current tooling writes YYYYMMDDHHMM)."""
    return (now or datetime.now(UTC)).strftime(TIMESTAMP_FORMATS[timestamp])


def full_repository(registry: str | None, namespace: str, name: str) -> str:
    """registry/namespace/name, checked against the 255-character OCI limit."""
    repo = "/".join(p for p in (registry, namespace, name) if p)
    if len(repo) > NAME_MAX:
        raise ConfigError(
            f"image repository is {len(repo)} characters, over the OCI limit of {NAME_MAX}: {repo}",
            where="release.namespace / registry / pins",
            fix="use a shorter registry namespace",
        )
    return repo


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise ConfigError(
            f"tag {tag!r} is not a valid OCI tag (at most 128 of [A-Za-z0-9_.-], not starting with . or -)",
            where="tags",
        )
    return tag


def base_reference(image: str, mirror: str | None) -> str:
    """Rewrite `quay.io/ascend/cann:...` to a mirror given as 'quay.io=mirror.host/quay'."""
    if not mirror:
        return image
    source, _, target = mirror.partition("=")
    if not target:
        raise ConfigError(
            f"base mirror {mirror!r} is not of the form SOURCE=TARGET",
            where="FLAGRELEASE_BASE_MIRROR / --base-mirror",
            fix="e.g. quay.io=registry.example.com/quay",
        )
    if image.startswith(source.rstrip("/") + "/"):
        return target.rstrip("/") + image[len(source.rstrip("/")) :]
    return image


def alias_tags(aliases: list[str], pins: dict[str, str]) -> list[str]:
    """Moving tags of a release: `{pin}` placeholders filled from the cell's pins."""
    return [alias.format(**pins) for alias in aliases]
