"""Typed shape of matrix.yaml and of a cell.

Every string that can reach a Dockerfile, a tag or a shell is held to a
pattern here, so that no pin can smuggle in a newline, a quote or a space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

NONE = "none"

Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")]
# Debian package versions carry an epoch (`1:`) and may use `~`.
PackageVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+:~_-]{0,63}$")]
Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
ImageRef = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]
SafeValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.,:=/@+%-]*$")]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/@+-]*$")]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sdk(Strict):
    """The vendor SDK (`pcp_` in the tag): cann, cuda, maca, musa, ix-ml, dtk, xre, or none."""

    name: Literal["cann", "cuda", "maca", "musa", "ix-ml", "dtk", "xre", "none"]
    version: Version = NONE


class Bootstrap(Strict):
    """How to make a base image locally (debootstrap -> docker import) when it is absent."""

    suite: Ident
    variant: Literal["minbase", "buildd", "fakechroot"] = "minbase"
    mirror: Url = "http://deb.debian.org/debian"
    include: list[Ident] = []


class BaseImage(Strict):
    image: ImageRef
    bootstrap: Bootstrap | None = None


class Mount(Strict):
    source: AbsPath
    target: AbsPath
    read_only: bool = True


class Runtime(Strict):
    """`docker run` options the chip needs: devices, mounts, environment."""

    devices: list[AbsPath] = []
    mounts: list[Mount] = []
    env: dict[EnvName, SafeValue] = {}
    visible_devices_env: EnvName | None = None
    shm_size: Annotated[str, StringConstraints(pattern=r"^[0-9]+[bkmg]?$")] | None = None


class Stack(Strict):
    """Pinned software of the image; `none` where a component is absent."""

    python: Version
    torch: Version = NONE
    torch_npu: Version = NONE
    vllm: Version = NONE
    vllm_plugin: Version = NONE
    flaggems: Version = NONE
    flagscale: Version = NONE
    flagtree: Version = NONE
    flagcx: Version = NONE
    engine: Literal["vllm", "sglang", "llama_cpp"]
    packages: dict[Ident, PackageVersion] = Field(default_factory=dict, description="extra pinned apt/pip packages")


class Chip(Strict):
    vendor: Ident
    chip_code: Annotated[str, StringConstraints(pattern=r"^[a-z]+[0-9]{3}$")]
    arch: Literal["amd64", "arm64"]
    sdk: Sdk
    driver: Version = NONE
    soc_version: Ident | None = None
    base: BaseImage
    template: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+\.j2$")]
    runtime: Runtime = Runtime()
    stack: Stack
    description: str = ""

    @property
    def platform(self) -> str:
        return f"linux/{self.arch}"


class Weights(Strict):
    """Where weights come from: generated offline, a ModelScope id, or a local directory."""

    source: Literal["generate", "modelscope", "local"]
    generator: Ident | None = None
    modelscope_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")] | None = None
    revision: Version | None = None
    path: AbsPath | None = None
    mount: AbsPath | None = None

    @field_validator("generator")
    @classmethod
    def _known_generator(cls, v: str | None) -> str | None:
        if v is not None and v != "tiny-llama":
            raise ValueError("the only offline generator is 'tiny-llama'")
        return v


class Serve(Strict):
    """FlagScale serve config: `engine_args` for every engine, plus per-engine extras."""

    engine_args: dict[Ident, Any]
    engine_args_specific: dict[Literal["vllm", "sglang", "llama_cpp"], dict[Ident, Any]] = {}

    @field_validator("engine_args")
    @classmethod
    def _has_port(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(v.get("port"), int):
            raise ValueError("engine_args.port (an integer) is required")
        return v


class Model(Strict):
    # `{vendor}` and `{chip}` expand per cell: "Qwen3-4B-{vendor}-flagos" -> Qwen3-4B-ascend-flagos.
    served_model_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9{][A-Za-z0-9._{}-]{0,127}$")]
    weights: Weights
    serve: Serve
    license: str = ""
    description: str = ""

    @field_validator("served_model_name")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        rest = v.replace("{vendor}", "").replace("{chip}", "")
        if "{" in rest or "}" in rest:
            raise ValueError("only {vendor} and {chip} may be used as placeholders")
        return v


class MatrixAxes(Strict):
    chip: list[str]
    model: list[str]
    include: list[dict[str, Any]] = []
    exclude: list[dict[str, Any]] = []


class ReleaseDefaults(Strict):
    namespace: Ident = "flagrelease"


class MatrixFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release: ReleaseDefaults = ReleaseDefaults()
    chips: dict[Ident, Chip]
    models: dict[Ident, Model]
    matrix: MatrixAxes
    source: Path | None = Field(default=None, exclude=True)

    @property
    def dockerfiles(self) -> Path:
        """Templates live in dockerfiles/ next to the matrix file."""
        assert self.source is not None
        return self.source.parent / "dockerfiles"


class Cell(Strict):
    chip_id: Ident
    model_id: Ident
    chip: Chip
    model: Model

    @property
    def slug(self) -> str:
        return f"{self.model_id}--{self.chip_id}"

    @property
    def label(self) -> str:
        return f"{self.model_id} x {self.chip_id}"

    @property
    def weights_mount(self) -> str:
        return self.model.weights.mount or f"/data/weights/{self.model_id}"
