"""The release record: everything one run did and measured, stored as JSON.

It is the source of truth for what was released: cards, ledgers and reports
are derived from records, never the other way round.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from flagrelease.accuracy import write_records
from flagrelease.base_image import BaseImageResult
from flagrelease.bench import SideResult
from flagrelease.build import ImageRef
from flagrelease.gate import GateReport
from flagrelease.loadgen import plot_sweep
from flagrelease.publish import PublishResult
from flagrelease.report import ReportResult
from flagrelease.smoke import SmokeResult


class ReleaseRecord(BaseModel):
    run_id: str
    started: datetime
    cell: str
    model: str
    chip: str
    status: str = "running"  # running | released | built | gated | failed
    error: str | None = None
    pins: dict[str, str] = {}
    context_hash: str | None = None
    base: BaseImageResult | None = None
    image: ImageRef | None = None
    smoke: SmokeResult | None = None
    bench: dict[str, SideResult] = {}
    flaggems_installed: bool | None = None
    compared_against: dict[str, str] = {}
    gate: GateReport | None = None
    registry: str | None = None  # checked before the build; where the push goes
    publish: PublishResult | None = None
    timings: dict[str, float] = {}
    # Where the record and its files were stored: known only after they were, so not in the file.
    reports: ReportResult | None = Field(default=None, exclude=True)

    def directory(self, results_dir: Path) -> Path:
        return results_dir / self.cell / self.run_id

    def save(self, results_dir: Path) -> Path:
        """Write release.json and, beside it, the raw results it summarises: the smoke log,
        every perf trace, every per-question record, and the perf plot."""
        out = self.directory(results_dir)
        out.mkdir(parents=True, exist_ok=True)
        data = json.loads(self.model_dump_json())
        if self.smoke is not None:
            (out / "smoke.log").write_text(self.smoke.log)
            data["smoke"]["log"] = "smoke.log"
        for side, result in self.bench.items():
            raw = out / f"perf-{side}.json"
            raw.write_text(json.dumps([[json.loads(r.model_dump_json()) for r in run] for run in result.perf_repeats],
                                      indent=1))
            data["bench"][side]["perf_repeats"] = raw.name
            for level in data["bench"][side]["perf"]:
                level["traces"] = raw.name
            for name, acc in result.accuracy.items():
                write_records(acc, out / f"accuracy-{side}-{name}.jsonl")
                data["bench"][side]["accuracy"][name]["results"] = f"accuracy-{side}-{name}.jsonl"
        if any(r.perf for r in self.bench.values()):
            plot_sweep({side: r.perf for side, r in self.bench.items()}, out / "perf.png")
            data["plot"] = "perf.png"
        path = out / "release.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path
