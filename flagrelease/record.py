"""The release record: everything one run did and measured, stored as JSON.

It is the source of truth for what was released: cards, ledgers and reports
are derived from records, never the other way round.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from flagrelease.base_image import BaseImageResult
from flagrelease.build import ImageRef
from flagrelease.publish import PublishResult
from flagrelease.smoke import SmokeResult


class ReleaseRecord(BaseModel):
    run_id: str
    started: datetime
    cell: str
    model: str
    chip: str
    status: str = "running"  # running | released | built | failed
    error: str | None = None
    pins: dict[str, str] = {}
    context_hash: str | None = None
    base: BaseImageResult | None = None
    image: ImageRef | None = None
    smoke: SmokeResult | None = None
    publish: PublishResult | None = None
    timings: dict[str, float] = {}

    def directory(self, results_dir: Path) -> Path:
        return results_dir / self.cell / self.run_id

    def save(self, results_dir: Path) -> Path:
        """Write release.json (smoke log kept beside it, not inline) and return its path."""
        out = self.directory(results_dir)
        out.mkdir(parents=True, exist_ok=True)
        data = json.loads(self.model_dump_json())
        if self.smoke is not None:
            (out / "smoke.log").write_text(self.smoke.log)
            data["smoke"]["log"] = "smoke.log"
        path = out / "release.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path
