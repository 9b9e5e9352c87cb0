"""Watch step: read the package index for the chips' index pins, propose candidate rows, and
turn them into a matrix patch; materialise the patched matrix for a build, or apply it.

    report = watch(matrix, "https://pypi.org/simple/", ca_bundle=None)
    report.patch                                   # unified diff of matrix.yaml ("" when nothing moves)
    path = candidate_matrix(matrix, report, home)  # the patched matrix, templates beside it
    apply(matrix, report)                          # writes matrix.yaml (only ever on request)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from flagrelease import bundle
from flagrelease.adapters.package_index import PackageIndex
from flagrelease.compat import ensure_compatible
from flagrelease.errors import ConfigError
from flagrelease.index_pins import ProjectFiles, index_pins
from flagrelease.matrix import expand, load_matrix
from flagrelease.matrix_patch import set_pins, unified_diff
from flagrelease.schema import Cell, MatrixFile
from flagrelease.watch import Candidate, PinNews, propose


class ProjectNews(BaseModel):
    """A project of `watch.projects`: no chip pins it, its releases are reported."""

    project: str
    newest: str | None  # None: not on the index


class BuiltCell(BaseModel):
    """A proposed cell run through the release path (`--build`)."""

    cell: str
    status: str
    exit_code: int
    error: str | None = None


class WatchReport(BaseModel):
    index: str
    matrix: str
    pins: list[PinNews]
    candidates: list[Candidate]
    projects: list[ProjectNews]
    patch: str  # unified diff of the matrix file; "" when no candidate
    patched: str = ""  # the whole patched file
    built: list[BuiltCell] = []
    applied: bool = False

    @property
    def exit_code(self) -> int:
        """0: nothing to propose, or the patch applied; 1: a patch proposed and not applied;
        the worst cell's code when a proposed cell's build failed (4: a gate refused it)."""
        failed = [b.exit_code for b in self.built if b.exit_code]
        if failed:
            return max(failed)
        return 1 if self.candidates and not self.applied else 0


def chips_in_cells(cells: list[Cell]) -> dict[str, list[Cell]]:
    """The cells of each chip, in matrix order."""
    found: dict[str, list[Cell]] = {}
    for cell in cells:
        found.setdefault(cell.chip_id, []).append(cell)
    return found


def watch(matrix: MatrixFile, index_url: str, *, ca_bundle: Path | None) -> WatchReport:
    assert matrix.source is not None, "a loaded matrix knows its file"
    cells = expand(matrix)
    ensure_compatible(cells, matrix.compatibility, str(matrix.source))  # a candidate starts from a valid row
    by_chip = chips_in_cells(cells)
    wanted = {pin.project for chip_id, c in by_chip.items() for pin in index_pins(chip_id, c[0].chip)}
    with PackageIndex(index_url, ca_bundle=ca_bundle) as index:
        releases: dict[str, ProjectFiles | None] = {p: index.project(p) for p in sorted(wanted)}
        extra = {p: index.project(p) for p in matrix.watch.projects if p not in releases}
        label = index.label
    news, candidates = propose(by_chip, matrix.compatibility, releases, matrix.watch.prereleases)
    text = matrix.source.read_text()
    patched = set_pins(text, {c.chip: {pin: new for pin, (_, new) in c.changes.items()} for c in candidates})
    if candidates:
        _check_patched(patched, matrix, candidates)
    return WatchReport(
        index=label,
        matrix=str(matrix.source),
        pins=news,
        candidates=candidates,
        projects=[ProjectNews(project=p, newest=_newest(f, matrix.watch.prereleases)) for p, f in extra.items()],
        patch=unified_diff(text, patched, matrix.source.name),
        patched=patched if candidates else "",
    )


def _newest(files: ProjectFiles | None, prereleases: bool) -> str | None:
    if files is None:
        return None
    releases = files.releases()
    shown = [v for v in releases if prereleases or not v.is_prerelease]
    return releases[max(shown)] if shown else None


def _check_patched(patched: str, matrix: MatrixFile, candidates: list[Candidate]) -> None:
    """The patch loads, names every image uniquely and passes every rule (else it is a bug here)."""
    assert matrix.source is not None
    with tempfile.TemporaryDirectory(prefix="flagrelease-watch-") as tmp:
        probe = Path(tmp) / matrix.source.name
        probe.write_text(patched)
        patched_matrix = load_matrix(probe)
    changed = {c.chip for c in candidates}
    cells = [c for c in expand(patched_matrix) if c.chip_id in changed]
    ensure_compatible(cells, patched_matrix.compatibility, str(matrix.source))


def candidate_matrix(matrix: MatrixFile, report: WatchReport, home: Path) -> Path:
    """The patched matrix with the files it refers to, content-addressed under `home`/watch: the
    proposed cells build from it through the normal release path, matrix.yaml untouched."""
    if not report.candidates:
        raise ConfigError("nothing to build: no candidate", where=report.matrix)
    models = {c.model_id for c in expand(matrix) if c.chip_id in {k.chip for k in report.candidates}}
    data, digest = bundle.pack(matrix, models, matrix_text=report.patched.encode())
    return bundle.unpack(data, digest, home / "watch" / digest.removeprefix("sha256:"))


def markdown(report: WatchReport) -> str:
    """The report as Markdown (the Prefect artifact of a watch run)."""
    rows = [
        f"| {n.chip} | {n.pin} ({n.project}) | {n.pinned} | {n.newest or '-'} | {n.proposed or '-'} | {n.status} "
        f"| {', '.join(b.rule for b in n.blocked_by) or '-'} |"
        for n in report.pins
    ]
    head = "| chip | pin | pinned | newest | proposed | status | blocked by |\n|---|---|---|---|---|---|---|\n"
    text = f"# upstream watch of {report.matrix}\n\nindex: {report.index}\n\n{head}" + "\n".join(rows) + "\n"
    if report.projects:
        text += "\n" + "\n".join(f"- {p.project}: newest {p.newest or 'not on the index'}" for p in report.projects)
        text += "\n"
    if report.patch:
        state = "applied" if report.applied else "proposed, not applied"
        text += f"\n## matrix patch ({state})\n\n```diff\n{report.patch}```\n"
    for b in report.built:
        text += f"\n- built {b.cell}: {b.status}" + (f" ({b.error.splitlines()[0]})" if b.error else "")
    return text


def apply(report: WatchReport) -> None:
    """Write the patch into the matrix file (replaced whole, never half written)."""
    target = Path(report.matrix)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    partial.write_text(report.patched)
    partial.replace(target)
    report.applied = True
