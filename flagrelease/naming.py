"""Image names and tags in the FlagRelease scheme, within the OCI limits.

flagrelease-<vendor>-release-model_<m>-tree_<t>-gems_<g>-scale_<s>-cx_<c>-python_<py>
-torch_<torch|npu+torch_npu>-pcp_<sdk+ver>-gpu_<chipcode>-arc_<arch>-driver_<drv>:<YYMMDDHHMM>
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

from flagrelease.errors import ConfigError
from flagrelease.schema import NONE, Cell

# distribution/reference: path components, tags, and the 255-character name limit.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_RELEASE_TAG = re.compile(r"^\d{10}$")
NAME_MAX = 255


@functools.lru_cache(maxsize=4096)  # a pure function of its text; called per pin of every cell planned
def tag_version(version: str) -> str:
    """A pin as it appears in a tag: lowercase, `+`->`.`, and the dot before `rc`
    dropped as PEP 440 normalises it (CANN 8.2.rc1.alpha002 -> 8.2rc1.alpha002)."""
    v = version.lower().replace("+", ".")
    v = re.sub(r"[.\-_](rc\d)", r"\1", v)
    return v


def _torch_field(cell: Cell) -> str:
    stack = cell.chip.stack
    if stack.torch_npu != NONE:
        return "npu" + tag_version(stack.torch_npu)
    return tag_version(stack.torch)


def _pcp_field(cell: Cell) -> str:
    sdk = cell.chip.sdk
    return NONE if sdk.name == NONE else sdk.name + tag_version(sdk.version)


def repository_name(cell: Cell) -> str:
    """The image name FlagRelease gives this cell (without registry and tag)."""
    return _image_name(cell, "release", [("model", cell.model_id), *_stack_fields(cell)])


def stack_repository_name(cell: Cell) -> str:
    """The name of the cell's chip-stack image: the release name without the model."""
    return _image_name(cell, "stack", _stack_fields(cell))


def _stack_fields(cell: Cell) -> list[tuple[str, str]]:
    stack = cell.chip.stack
    return [
        ("tree", tag_version(stack.flagtree)),
        ("gems", tag_version(stack.flaggems)),
        ("scale", tag_version(stack.flagscale)),
        ("cx", tag_version(stack.flagcx)),
        ("python", tag_version(stack.python)),
        ("torch", _torch_field(cell)),
        ("pcp", _pcp_field(cell)),
        ("gpu", cell.chip.chip_code),
        ("arc", cell.chip.arch),
        ("driver", tag_version(cell.chip.driver)),
    ]


def _image_name(cell: Cell, kind: str, fields: list[tuple[str, str]]) -> str:
    name = f"flagrelease-{cell.chip.vendor}-{kind}-" + "-".join(f"{k}_{v}" for k, v in fields)
    name = re.sub(r"-{2,}", "-", re.sub(r"_{2,}", "_", name))
    if not _COMPONENT.match(name):
        raise ConfigError(
            f"image name {name!r} is not a valid OCI repository component",
            where=f"cell {cell.label}",
            fix="pins may hold only letters, digits, '.', '_' and '-'",
        )
    return name


def set_key(cell: Cell) -> str:
    """Cells that differ only in arch form one multi-arch set, published all or nothing."""
    return re.sub(r"-arc_[a-z0-9]+", "", repository_name(cell))


def key_tag(key: str) -> str:
    """The tag naming an image by its key (release key or chip-stack key) in its repository."""
    return "key-" + key


def is_release_tag(tag: str) -> bool:
    return bool(_RELEASE_TAG.match(tag))


def timestamp_tag(now: datetime | None = None) -> str:
    """FlagRelease's release tag: UTC time as YYMMDDHHMM."""
    return (now or datetime.now(UTC)).strftime("%y%m%d%H%M")


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
