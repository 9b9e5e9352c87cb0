"""Typed shape of matrix.yaml and of a cell.

Every string that can reach a Dockerfile, a tag or a shell is held to a
pattern here, so that no pin can smuggle in a newline, a quote or a space.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from flagrelease.errors import did_you_mean

NONE = "none"

Version = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")]
# Debian package versions carry an epoch (`1:`) and may use `~`.
PackageVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+:~_-]{0,63}$")]
Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
ImageRef = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")]
GitSource = Annotated[str, StringConstraints(pattern=r"^git\+https://[A-Za-z0-9._/-]+(@[A-Za-z0-9._-]+)?$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]
SafeValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.,:=/@+%-]*$")]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/@+-]*$")]
# An absolute path that may hold shell glob characters; it is expanded by `sh` inside an image.
PathGlob = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/@+*?\[\]-]*$")]


# Prefect accepts most characters in a work pool name; these also stay valid in a deployment
# name, a URL path and a shell word.
def _not_reserved(name: str) -> str:
    if name.startswith("prefect"):
        raise ValueError(f"{name!r}: Prefect reserves pool names starting with 'prefect'")
    return name


PoolName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"), AfterValidator(_not_reserved)]
# URLs reach shell commands inside builds: no quotes, `$`, backticks, `;`, `&` or spaces.
Url = Annotated[str, StringConstraints(pattern=r"^https?://[A-Za-z0-9._~:/@%+-]+$")]
# Prose for model cards and messages; bounded, it reaches no shell or Dockerfile.
Prose = Annotated[str, StringConstraints(max_length=2000)]


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
    gpus: bool = Field(default=False, description="request all GPUs (`docker run --gpus all`, NVIDIA runtime)")
    shm_size: Annotated[str, StringConstraints(pattern=r"^[0-9]+[bkmg]?$")] | None = None


Side = Literal["native", "flaggems"]
SIDES: tuple[Side, Side] = ("native", "flaggems")
# Pins a chip may install from the package index (PyPI, or FLAGRELEASE_PIP_INDEX_URL).
IndexPin = Literal[
    "torch", "torch_npu", "vllm", "vllm_plugin", "vllm_fl", "flaggems", "flagscale", "flagtree", "flagcx"
]
# A project name on a package index (PEP 503 normalises case and `_.` to `-`).
ProjectName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")]


class Launcher(Strict):
    """How the image starts its serve stack, and how the two sides of a comparison are switched.

    `name` picks dockerfiles/launchers/<name>.json.j2, which renders the command into the model
    image (serve/launch.json); the image's entrypoint runs it. `sides` is the environment each
    side runs with: the bench starts the same image once per side with FLAGRELEASE_SIDE set,
    and the entrypoint gives the engine exactly that side's variables (a variable only the
    other side declares is removed). The default is FlagScale 0.8's switch, USE_FLAGGEMS.
    """

    name: Ident = "flagscale"
    sides: dict[Side, dict[EnvName, SafeValue]] = {
        "native": {"USE_FLAGGEMS": "false"},
        "flaggems": {"USE_FLAGGEMS": "true"},
    }

    @field_validator("sides")
    @classmethod
    def _both_sides(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        missing = [side for side in SIDES if side not in v]
        if missing:
            raise ValueError(f"declare the environment of both sides (native and flaggems); missing: {missing}")
        if v["native"] == v["flaggems"]:
            raise ValueError("both sides declare the same environment: nothing would switch FlagOS on")
        return v


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
    # vllm-plugin-FL (`vllm_fl`), the vLLM platform plugin through which current FlagOS stacks serve.
    vllm_fl: Version = NONE
    engine: Literal["vllm", "sglang", "llama_cpp"]
    launcher: Launcher = Launcher()
    # Where a FlagOS component comes from when not PyPI (FlagGems 2.x is not published there).
    sources: dict[Literal["flaggems", "flagscale", "flagtree", "flagcx", "vllm_fl"], GitSource] = {}
    # Pins the image installs from the package index, pin -> project name: preflight checks that
    # each pinned version is there before a stack is built, and `flagrelease watch` looks for
    # newer ones. A pin that is `none` or comes from `sources` is not looked up.
    from_index: dict[IndexPin, ProjectName] = {}
    packages: dict[Ident, PackageVersion] = Field(default_factory=dict, description="extra pinned apt/pip packages")
    # Where the serve stack has FlagGems record the operators it serves (flag_gems.enable(record=True,
    # path=...)): FlagScale 0.8's vLLM backend writes this path; the image points vllm-plugin-FL's
    # FLAGGEMS_ENABLE_OPLIST_PATH at it. The bench reads it from each side's container.
    flaggems_record: AbsPath = "/tmp/gems_oplist.log.txt"


# Pins that appear in the image name, and may declare how they are spelled there (naming.py).
SpelledPin = Literal[
    "chip_code", "sdk_version", "driver", "python", "torch", "torch_npu", "flaggems", "flagscale", "flagtree", "flagcx"
]
NAME_PINS: tuple[str, ...] = get_args(SpelledPin)
_SPELL_PLACEHOLDER = r"\{(?:value|" + "|".join(NAME_PINS) + r")(?:\|compact_rc)?\}"
# Literal text (lowercase letters, digits, `.`, `_`) and `{value}` / `{<pin>}` placeholders,
# optionally `|compact_rc`; never a `-`, which separates the name's fields.
Spelling = Annotated[str, StringConstraints(pattern=rf"^(?:[a-z0-9._]|{_SPELL_PLACEHOLDER}){{1,64}}$")]


class Chip(Strict):
    vendor: Ident
    chip_code: Annotated[str, StringConstraints(pattern=r"^[a-z]+[0-9]{3}$")]
    arch: Literal["amd64", "arm64"]
    sdk: Sdk
    driver: Version = NONE
    soc_version: Ident | None = None
    # Scripts sourced before the engine starts (FlagScale's experiment.cmds.before_start),
    # e.g. CANN's set_env.sh.
    serve_env_scripts: list[AbsPath] = []
    base: BaseImage
    template: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+\.j2$")]
    runtime: Runtime = Runtime()
    stack: Stack
    # The Prefect work pool whose workers run on hosts with this chip; chips on the same
    # hosts may share one. None: `flagrelease-<chip id>`.
    pool: PoolName | None = None
    # How pins are spelled in the image name, pin -> template: `{value}` is the pin as written
    # (lowercase, `+` -> `.`), `{value|compact_rc}` drops the separator before `rc<N>` (the
    # default), `{<pin>}` is another pin. E.g. {chip_code: "{value}.a2"} tells an A2 image
    # from the A3 one that FlagRelease also names `ascend001`.
    spelling: dict[SpelledPin, Spelling] = {}
    description: Prose = ""

    @property
    def platform(self) -> str:
        return f"linux/{self.arch}"


class Weights(Strict):
    """Where weights come from: generated offline, a ModelScope id, or a local directory."""

    source: Literal["generate", "modelscope", "local", "s3"]
    generator: Ident | None = None
    modelscope_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")] | None = None
    revision: Version | None = None
    path: AbsPath | None = None
    uri: (
        Annotated[str, StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$")] | None
    ) = None
    mount: AbsPath | None = None

    @model_validator(mode="after")
    def _source_has_its_field(self) -> Weights:
        needed = {"generate": "generator", "modelscope": "modelscope_id", "local": "path", "s3": "uri"}[self.source]
        if getattr(self, needed) is None:
            raise ValueError(f"weights.source {self.source} needs weights.{needed}")
        return self

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
        return _scalar_args(v)

    @field_validator("engine_args_specific")
    @classmethod
    def _specific_scalars(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {engine: _scalar_args(args) for engine, args in v.items()}


# Engine arguments become command-line flags via FlagScale (0.8 joins them into shell command
# lines on some launch paths), and hydra would resolve `${...}`: plain text only, or a JSON
# object (vLLM's --compilation-config '{"full_cuda_graph": true}') whose keys and string
# values are plain text too. Such an object is stored compact (no spaces), so that, even
# unquoted in a shell line, it holds nothing but braces, brackets, commas, colons and
# paired double quotes: no word splitting, no substitution, no second command.
_ARG_TEXT = re.compile(r"^[A-Za-z0-9_.,:=/@+%-]*$")
_JSON_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_JSON_MAX_DEPTH = 4


def _scalar_args(args: dict[str, Any]) -> dict[str, Any]:
    checked = {}
    for key, value in args.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"engine argument {key} must be a scalar, got {type(value).__name__}")
        if isinstance(value, str) and not _ARG_TEXT.match(value):
            value = _json_object(key, value)
        checked[key] = value
    return checked


def _json_object(key: str, text: str) -> str:
    """A JSON-object engine argument, checked all the way down and written compact."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(
            f"engine argument {key} holds characters that are not allowed: use letters, digits and "
            "_.,:=/@+%- only, or a JSON object"
        )
    _check_json(key, parsed, 1)
    return json.dumps(parsed, separators=(",", ":"))


def _check_json(key: str, value: Any, depth: int) -> None:
    if depth > _JSON_MAX_DEPTH:
        raise ValueError(f"engine argument {key}: JSON nested deeper than {_JSON_MAX_DEPTH} levels")
    if isinstance(value, dict):
        for inner_key, inner in value.items():
            if not _JSON_KEY.match(inner_key):
                raise ValueError(
                    f"engine argument {key}: JSON key {inner_key[:40]!r} may hold only letters, digits and _.-"
                )
            _check_json(key, inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            _check_json(key, inner, depth + 1)
    elif isinstance(value, str) and not _ARG_TEXT.match(value):
        raise ValueError(
            f"engine argument {key}: JSON string {value[:40]!r} may hold only letters, digits and _.,:=/@+%-"
        )


class PerfPlan(Strict):
    """`vllm bench serve`-style sweep; defaults are FlagRelease's levels and shapes."""

    concurrency: list[Annotated[int, Field(ge=1)]] = [1, 4, 16, 64, 128, 256]
    shapes: list[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]] = [
        (1024, 1024),
        (4096, 1024),
        (8192, 1024),
    ]
    # Prompts in a level's first window; later windows take as many as fill `window_s` at the
    # rate the first ones ran (never fewer, never more than `max_prompts`).
    num_prompts: Annotated[int, Field(ge=1, le=10000)] = 64
    window_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_prompts: Annotated[int, Field(ge=1, le=100000)] = 4096
    num_warmups: Annotated[int, Field(ge=0)] = 2
    # Pairs of windows per level (one window per side each): the gate's interval comes from
    # their spread, so at least 3; more narrow it as 1/sqrt(pairs).
    repeats: Annotated[int, Field(ge=1, le=64)] = 5
    # While a level's interval still straddles the gate's threshold after `repeats` pairs, add
    # pairs (one at every level per round) up to this many: a busy host costs time, not a
    # verdict. Unset: exactly `repeats`. Needs `interleave` (both stacks up to add a pair).
    max_repeats: Annotated[int, Field(ge=1, le=256)] | None = None
    # Keep both sides' serve stacks up and run a pair's windows back to back (needs room for two).
    interleave: bool = False
    request_timeout_s: Annotated[float, Field(gt=0)] = 600.0

    @model_validator(mode="after")
    def _room_to_add_pairs(self) -> PerfPlan:
        if self.max_repeats is not None:
            if self.max_repeats < self.repeats:
                raise ValueError(f"max_repeats ({self.max_repeats}) is below repeats ({self.repeats})")
            if not self.interleave:
                raise ValueError(
                    "max_repeats adds pairs while both stacks are up: set interleave: true, or drop max_repeats"
                )
        return self


class AccuracyPlan(Strict):
    name: Ident
    path: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]+\.jsonl$")]  # relative to matrix.yaml
    kind: Literal["multiple_choice", "exact_match"]
    concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    max_tokens: Annotated[int, Field(ge=1)] = 8
    # k answers sampled per question, scored avg@k (as AIME usually is); sampling needs a
    # temperature above 0, or every sample is the same answer.
    samples: Annotated[int, Field(ge=1, le=64)] = 1
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0  # nucleus sampling, when temperature > 0

    @model_validator(mode="after")
    def _samples_differ(self) -> AccuracyPlan:
        if self.samples > 1 and self.temperature == 0:
            raise ValueError(
                f"samples: {self.samples} at temperature 0 would ask the same question {self.samples} times "
                "for one answer; set temperature (e.g. 0.6) or samples: 1"
            )
        return self


class GatePolicy(BaseModel):
    """Release-gate thresholds (flagrelease/gate.py decides; docs/gates.md explains)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["classic", "statistical"] = "statistical"
    max_drop: float = 0.05
    perf_min_ratio: Annotated[float, Field(gt=0)] = 0.8
    z: Annotated[float, Field(gt=0)] = 1.96
    inconclusive_blocks: bool = True

    @field_validator("max_drop")
    @classmethod
    def _a_fraction(cls, v: float) -> float:
        # Accuracy is a fraction (0.72), so the margin is one too: 5 points is 0.05, never 5.
        if not 0 <= v < 1:
            hint = f"; {v:g} looks like a percentage, which would be {v / 100:g}" if 1 <= v <= 100 else ""
            raise ValueError(f"max_drop is a fraction of accuracy from 0 up to 1 (0.05 allows 5 points){hint}")
        return v


RunId = Annotated[str, StringConstraints(pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")]


class ReleasedReference(Strict):
    """A released cell as the reference stack (e.g. the native NVIDIA cell): the gate reads its
    ledger record and per-question results, so reference numbers trace to raw results."""

    chip: Ident
    model: Ident | None = None  # default: the gated cell's own model
    side: Literal["native", "flaggems"] = "native"
    # A fixed run of that cell; default: its newest released run in the ledger.
    run: RunId | None = None


class BenchPlan(Strict):
    perf: PerfPlan | None = PerfPlan()
    accuracy: list[AccuracyPlan] = []
    # CPUs a side's container may use (`docker run --cpus`): a deliberately slowed side is how
    # the perf gate's power is tested; unset, a side gets what the chip's runtime gives.
    side_cpus: dict[Literal["native", "flaggems"], Annotated[float, Field(gt=0, le=1024)]] = {}
    # A published baseline file (hand-typed numbers, relative to matrix.yaml), or a released cell.
    reference: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]+\.ya?ml$")] | ReleasedReference | None = None
    gate: GatePolicy = GatePolicy()


class Model(Strict):
    # `{vendor}` and `{chip}` expand per cell: "Qwen3-4B-{vendor}-flagos" -> Qwen3-4B-ascend-flagos.
    served_model_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9{][A-Za-z0-9._{}-]{0,127}$")]
    weights: Weights
    serve: Serve
    bench: BenchPlan = BenchPlan()
    license: Prose = ""
    description: Prose = ""

    @field_validator("served_model_name")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        rest = v.replace("{vendor}", "").replace("{chip}", "")
        if "{" in rest or "}" in rest:
            raise ValueError("only {vendor} and {chip} may be used as placeholders")
        return v


# Compatibility rules (checked by flagrelease/compat.py) speak about these cell facts.
FACT_NAMES = (
    "chip.id",
    "chip.vendor",
    "chip.chip_code",
    "chip.arch",
    "chip.soc_version",
    "chip.driver",
    "sdk.name",
    "sdk.version",
    "base.image",
    "runtime.visible_devices_env",
    "model.id",
    "stack.python",
    "stack.torch",
    "stack.torch_npu",
    "stack.vllm",
    "stack.vllm_plugin",
    "stack.flaggems",
    "stack.flagscale",
    "stack.flagtree",
    "stack.flagcx",
    "stack.vllm_fl",
    "stack.engine",
    "stack.launcher",
)


def _known_fact(name: str) -> str:
    if name not in FACT_NAMES:
        raise ValueError(f"unknown fact {name[:60]!r}{did_you_mean(name, FACT_NAMES)}; facts: {', '.join(FACT_NAMES)}")
    return name


FactName = Annotated[str, AfterValidator(_known_fact)]
PLACEHOLDER = re.compile(r"\{([a-z_.]+)(\|major_minor(?:_nodot)?)?\}")


class Requirement(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field: FactName
    in_: list[str] | None = Field(default=None, alias="in")
    same_release_as: FactName | None = None
    parts: int = 2
    contains: str | None = None
    by: FactName | None = None
    table: dict[str, list[str]] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Requirement:
        kinds = [
            self.in_ is not None,
            self.same_release_as is not None,
            self.contains is not None,
            self.table is not None,
        ]
        if sum(kinds) != 1:
            raise ValueError("state exactly one of: in, same_release_as, contains, table")
        if (self.table is None) != (self.by is None):
            raise ValueError("`table` and `by` go together")
        for name, _ in PLACEHOLDER.findall(self.contains or ""):
            if name not in FACT_NAMES:
                raise ValueError(f"unknown fact {{{name}}} in contains")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    description: Prose
    when: dict[FactName, str | list[str]] = {}
    require: Requirement


class CellOverrides(Strict):
    """Deep-merged into the chip and model of the cells an include entry extends."""

    chip: dict[str, Any] = {}
    model: dict[str, Any] = {}


class ExcludeEntry(Strict):
    """Removes every combination it matches on all the axes it names."""

    chip: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _names_an_axis(self) -> ExcludeEntry:
        if self.chip is None and self.model is None:
            raise ValueError("an exclude entry names a chip, a model or both")
        return self


class IncludeEntry(Strict):
    """Extends the combinations whose axes it matches, or adds a new cell (GitHub Actions)."""

    chip: str | None = None
    model: str | None = None
    overrides: CellOverrides | None = None

    @model_validator(mode="after")
    def _names_an_axis(self) -> IncludeEntry:
        if self.chip is None and self.model is None:
            raise ValueError("an include entry names a chip, a model or both")
        return self


class MatrixAxes(Strict):
    chip: list[str]
    model: list[str]
    include: list[IncludeEntry] = []
    exclude: list[ExcludeEntry] = []


class VersionFile(Strict):
    """A vendor SDK file inside an image that states the SDK's version (read for the SBOM)."""

    path: AbsPath
    component: Ident  # the SBOM component it becomes, e.g. cann-toolkit
    format: Literal["key=value", "json"] = "key=value"
    # The line's key (key=value), or a dotted path into the JSON document ("cuda.version").
    key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "version"


class SbomSources(Strict):
    """Where the SBOM looks inside an image: Python interpreters (each one's environment is
    listed), and vendor SDK version files. The dpkg and rpm databases are always read."""

    interpreters: list[PathGlob] = [
        "/usr/bin/python3",
        "/usr/bin/python3.[0-9]",
        "/usr/bin/python3.[0-9][0-9]",
        "/usr/local/bin/python3",
        "/usr/local/python3*/bin/python3",
        "/opt/*/bin/python3",
        "/opt/conda/envs/*/bin/python3",
    ]
    version_files: list[VersionFile] = []


TimestampFormat = Literal["YYMMDDHHMM", "YYYYMMDDHHMM"]


class ReleaseDefaults(Strict):
    namespace: Ident = "flagrelease"
    sbom: SbomSources = SbomSources()
    # The release tag: UTC time, 10 digits as in the reference card (2512101714) or 12 as
    # FlagRelease's current tooling writes them (202512101714). Both are read as release tags.
    timestamp: TimestampFormat = "YYMMDDHHMM"
    # Moving tags, set only after the gate passed and the release tag is verified;
    # `{pin}` expands from the cell's pins ("{flaggems}-{flagscale}" -> 2.2-0.8.0).
    aliases: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_{}][A-Za-z0-9_.{}-]{0,127}$")]] = ["latest"]


class CronSchedule(Strict):
    """When a deployment runs, as Prefect cron."""

    name: Ident
    cron: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9*/,?#LW -]{9,100}$")]
    timezone: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+/-]{1,64}$")] = "UTC"

    @field_validator("cron")
    @classmethod
    def _parses(cls, v: str) -> str:
        from croniter import croniter  # what Prefect's CronSchedule validates with (vendored there)

        # Five fields, and none of croniter's hashed or random forms, which Prefect refuses.
        if len(v.split()) != 5 or re.search(r"\b[HR]\b", v) or not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a valid cron expression (5 fields: minute hour day month weekday)")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. UTC, Asia/Shanghai)") from None
        return v


class Schedule(CronSchedule):
    """A scheduled run of the whole matrix (the `release-matrix` deployment)."""

    # Rebuild and re-measure even unchanged cells (a weekly rebuild picks up base image fixes).
    force: bool = False


class WatchSchedule(CronSchedule):
    """A scheduled `flagrelease watch` (the `watch-upstream` deployment); it never applies its patch."""

    # Run the proposed cells through the release path too (push only after their gate passed).
    build: bool = False


def _unique_schedule_names(v: list[Any]) -> list[Any]:
    names = [s.name for s in v]
    if len(set(names)) != len(names):
        raise ValueError(f"schedule names must be unique, got {names}")
    return v


class Watch(Strict):
    """`flagrelease watch`: where new upstream releases are looked for, and when."""

    # A PEP 503 / PEP 691 simple index; `--index` or FLAGRELEASE_INDEX_URL override it.
    index: Url = "https://pypi.org/simple/"
    # Projects reported beside the chips' `stack.from_index` pins (no cell pins them yet).
    projects: list[ProjectName] = []
    # Consider pre-releases (rc, dev) as candidates; a pin that is one is always compared.
    prereleases: bool = False
    schedules: list[WatchSchedule] = []

    @field_validator("schedules")
    @classmethod
    def _unique_names(cls, v: list[WatchSchedule]) -> list[WatchSchedule]:
        return _unique_schedule_names(v)


class Fleet(Strict):
    """How a matrix run spreads over chip hosts (Prefect work pools) and time (schedules)."""

    # Cells run at once by an in-process `release` (no PREFECT_API_URL); `--jobs` overrides.
    jobs: Annotated[int, Field(ge=1, le=64)] = 1
    # Cells running at once across the whole fleet (a Prefect global concurrency limit).
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 8
    # Cell runs at once per pool: one accelerator host serves one cell at a time by default.
    pool_concurrency: dict[PoolName, Annotated[int, Field(ge=1, le=1024)]] = {}
    default_pool_concurrency: Annotated[int, Field(ge=1, le=1024)] = 1
    # The pool of the host that runs scheduled `release-matrix` runs (the orchestrator); it
    # must not be a chip's pool, or a parent could wait on the slot its own cells need.
    orchestrator_pool: PoolName = "flagrelease-orchestrator"
    # How long `release-matrix` waits for its cell runs before reporting the rest as not done.
    deadline_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60)] = 360
    # How long a cell's run may wait with no worker online in its pool before it is reported
    # (and cancelled) instead of waited for: a starting worker needs a few seconds to show up.
    worker_wait_seconds: Annotated[float, Field(gt=0, le=24 * 3600)] = 120
    schedules: list[Schedule] = []

    @field_validator("schedules")
    @classmethod
    def _unique_names(cls, v: list[Schedule]) -> list[Schedule]:
        return _unique_schedule_names(v)


class MatrixFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release: ReleaseDefaults = ReleaseDefaults()
    fleet: Fleet = Fleet()
    watch: Watch = Watch()
    chips: dict[Ident, Chip]
    models: dict[Ident, Model]
    matrix: MatrixAxes
    compatibility: list[Rule] = []
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

    @property
    def pool(self) -> str:
        """The Prefect work pool whose workers can run this cell."""
        return pool_of(self.chip_id, self.chip)


def pool_of(chip_id: str, chip: Chip) -> str:
    """The Prefect work pool of a chip's hosts: declared, else `flagrelease-<chip id>`."""
    return chip.pool or f"flagrelease-{chip_id}"
