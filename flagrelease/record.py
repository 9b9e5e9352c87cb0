"""The release record: everything one run did and measured, as typed data in one file.

It is the source of truth for what was released: cards, ledgers and reports are
derived from records, never the other way round. `release.json` holds the
summaries; the raw results they come from (container log, every perf trace,
every per-question record) sit beside it in files the report step writes and
the record names in `files`.

    record = ReleaseRecord.load(run_dir)      # run_dir/release.json
    record.save(record.directory(results_dir))  # results_dir/<cell>/<run_id>/release.json
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from flagrelease.errors import ConfigError
from flagrelease.input_files import read_bytes
from flagrelease.results import (
    BaseImageResult,
    ExistingRelease,
    GateReport,
    ImageRef,
    PublishResult,
    ReferenceScore,
    ReportResult,
    SideResult,
    SmokeResult,
    StackImage,
    StagedImage,
)
from flagrelease.supply_chain import Attestation
from flagrelease.validation import config_error

RECORD_FILE = "release.json"
# Raw results live beside the record, so the record itself stays small.
MAX_RECORD_BYTES = 16 * 1024 * 1024

# running: in progress (or killed outright: kill -9, a lost host); interrupted: stopped by
# SIGTERM or SIGINT, its cleanup done; built: passed its gate, not pushed (no registry, or
# waiting for its multi-arch set); gated: the gate refused it; failed: a step failed;
# released: gated, pushed and verified under its release tag; unchanged: the registry already
# serves a release of the same release key (`unchanged` names it), so nothing was done.
Status = Literal["running", "interrupted", "built", "gated", "failed", "released", "unchanged"]
QUALIFIED: Status = "released"

# Raw results are kept in their own files, not in release.json (see `files`).
_RAW: dict[str, Any] = {
    "smoke": {"log"},
    "bench": {"__all__": {"perf_repeats": True, "perf": {"__all__": {"traces"}}, "accuracy": {"__all__": {"results"}}}},
}


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by time, unique across hosts: 20261202T010203Z-1a2b3c."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class ReleaseRecord(BaseModel):
    run_id: str
    started: datetime
    cell: str
    model: str
    chip: str
    status: Status = "running"
    error: str | None = None
    pins: dict[str, str] = {}
    context_hash: str | None = None  # of the model image's build context
    # Everything that decides the released bits and their verdict, hashed (steps/release_key.py).
    release_key: str | None = None
    key_parts: dict[str, str] = {}
    unchanged: ExistingRelease | None = None
    # A run that resumes a failed one of the same key takes its completed stages over.
    resumed_from: str | None = None
    reused: list[str] = []
    base: BaseImageResult | None = None
    stack: StackImage | None = None
    image: ImageRef | None = None
    smoke: SmokeResult | None = None
    bench: dict[str, SideResult] = {}
    flaggems_installed: bool | None = None
    compared_against: dict[str, str] = {}
    # Per benchmark, the reference score the gate compared with and what it traces to (the
    # released reference run, its per-question file and sha256; or published numbers).
    reference: dict[str, ReferenceScore] = {}
    gate: GateReport | None = None
    registry: str | None = None  # checked before the build; where the push goes
    # A multi-arch set member: pushed under its staging tag, released when the whole set is.
    staged: StagedImage | None = None
    publish: PublishResult | None = None
    # The SBOM and provenance of the released image, by kind: files beside release.json,
    # attached to the digest in the registry (see flagrelease/supply_chain.py).
    attestations: dict[str, Attestation] = {}
    timings: dict[str, float] = {}
    # How the run ended for a command line: 0 done, else the FlagReleaseError's exit code.
    exit_code: int = 0
    # Raw-result files beside release.json, by role ("smoke.log", "perf-native", "accuracy-flaggems-mmlu", "plot").
    files: dict[str, str] = {}
    # Where the record and its files were stored: known only after they were, so not in the file.
    reports: ReportResult | None = Field(default=None, exclude=True)

    def directory(self, results_dir: Path) -> Path:
        return results_dir / self.cell / self.run_id

    def to_json(self) -> str:
        return self.model_dump_json(exclude=_RAW, indent=2) + "\n"

    def save(self, run_dir: Path) -> Path:
        """Write release.json into the run's directory (created if needed), whole or not at all:
        a full disk or a kill mid-write leaves the previous version, never a torn file."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / RECORD_FILE
        partial = run_dir / f".{RECORD_FILE}.partial"
        try:
            partial.write_text(self.to_json())
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> ReleaseRecord:
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            raise config_error(
                err,
                cls,
                what="release record",
                where=where,
                fix="restore release.json from the artifact store (or pass the run directory that holds it)",
            ) from None

    @classmethod
    def load(cls, path: Path) -> ReleaseRecord:
        """A record from a run directory or a release.json path."""
        path = path / RECORD_FILE if path.is_dir() else path
        if not path.exists():
            raise ConfigError(
                f"no release record at {path}",
                where=str(path.parent),
                fix="pass a run directory that holds release.json",
            )
        return cls.parse(read_bytes(path, "release record", max_bytes=MAX_RECORD_BYTES), str(path))

    def as_dict(self) -> dict:
        """release.json as stored, as plain data (for templates and JSON output)."""
        return json.loads(self.to_json())
