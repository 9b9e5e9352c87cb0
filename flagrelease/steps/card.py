"""Model card: the Markdown a registry consumer reads to pull, run and trust one release.

Rendered from the stored release record (release.json) and the cell it was built
from. Every number comes from the record, the reference column included (`reference`:
what the gate compared against and what it traces to; for records older than that, the
published baseline passed in); none is typed into the template. Published numbers
without per-question results are labelled so. The
template is strict: a field the record lacks stops the card, naming the line.

    write_card(run_dir, cell, baseline)  # run_dir/release.json -> run_dir/card.md
"""

from __future__ import annotations

import traceback
from pathlib import Path

import jinja2
import yaml

from flagrelease.baseline import Baseline, published_score
from flagrelease.cell_facts import SERVE_CONF, pins, serve_config, serve_port, served_name
from flagrelease.errors import ConfigError
from flagrelease.record import RECORD_FILE, ReleaseRecord
from flagrelease.results import ReferenceScore
from flagrelease.schema import Cell

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
TEMPLATE = "model_card.md.j2"
CARD = "card.md"
# The gate's diff is candidate - reference from the same floats; only JSON rounding separates them.
TOLERANCE = 1e-9


def render_card(release: ReleaseRecord, cell: Cell, baseline: Baseline | None) -> str:
    """The card for a released run."""
    run = release.run_id
    if release.status != "released":
        raise ConfigError(
            f"run {run} has status {release.status!r}: only a released run gets a card",
            where=RECORD_FILE,
            fix="publish the release first (gate passed, image pushed)",
        )
    if release.pins != pins(cell):
        raise ConfigError(
            f"run {run} was not built from cell {cell.label} as it stands now (pins differ)",
            where=f"{RECORD_FILE}: pins",
            fix="render the card with the matrix the run was built from",
        )
    record = release.as_dict()  # the template reads the record as stored
    reference = {
        name: score.model_dump() for name, score in (release.reference or _reference_of_old(release, baseline)).items()
    }
    serve_list = yaml.safe_dump(serve_config(cell)[1], sort_keys=False)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )  # Markdown, not HTML
    try:
        text = env.get_template(TEMPLATE).render(
            record=record,
            cell=cell,
            reference=reference,
            reference_sources=_sources(release.reference or _reference_of_old(release, baseline)),
            served_name=served_name(cell),
            serve_list=serve_list,
            serve_conf=SERVE_CONF,
            port=serve_port(cell),
        )
    except jinja2.UndefinedError as err:
        raise ConfigError(
            f"release record of run {run} lacks a field the card needs: {err.message}",
            where=_template_line(err),
            fix="render the card from the complete release.json",
        ) from None
    _check_reference(record, reference)
    return text


def write_card(run_dir: Path, cell: Cell, baseline: Baseline | None) -> Path:
    out = run_dir / CARD
    out.write_text(render_card(ReleaseRecord.load(run_dir), cell, baseline))
    return out


def _reference_of_old(release: ReleaseRecord, baseline: Baseline | None) -> dict[str, ReferenceScore]:
    """What a record from before `ReleaseRecord.reference` was gated against, as the gate
    then chose it: the published baseline where it has the benchmark, else the native side."""
    found = {}
    for verdict in release.gate.accuracy if release.gate else []:
        name = verdict.benchmark
        if baseline is not None and name in baseline.benchmarks:
            found[name] = published_score(baseline, name)
        elif "native" in release.bench and name in release.bench["native"].accuracy:
            own = release.bench["native"].accuracy[name]
            found[name] = ReferenceScore(
                against="native side of this run", origin="this run", score=own.score, n=own.n, samples=own.samples
            )
    return found


def _sources(reference: dict[str, ReferenceScore]) -> list[dict]:
    """One line per reference the card names: which benchmarks, what they were compared
    against and what those numbers trace to (the raw results and their digests, if any)."""
    lines: dict[tuple[str, bool], dict] = {}
    for name, score in reference.items():
        line = lines.setdefault(
            (score.against, score.raw is not None),
            {
                "against": score.against,
                "origin": score.origin,
                "image": score.image,
                "source": score.source,
                "benchmarks": [],
                "raw": [],
            },
        )
        line["benchmarks"].append(name)
        if score.raw is not None:
            line["raw"].append({"benchmark": name, "path": score.raw, "sha256": score.sha256})
    return list(lines.values())


def _check_reference(record: dict, reference: dict[str, dict]) -> None:
    """The reference column must be what the gate compared against: a baseline edited since
    the run would otherwise show numbers the gate never saw. Runs after rendering, so
    every field read here is known to exist."""
    for verdict in record["gate"]["accuracy"]:
        name = verdict["benchmark"]
        candidate = record["bench"]["flaggems"]["accuracy"][name]["score"]
        shown = reference.get(name)
        if shown is None or abs(candidate - shown["score"] - verdict["diff"]) > TOLERANCE:
            card = (
                f"{shown['against']}, {shown['score']:.4f} ({candidate - shown['score']:+.4f})" if shown else "nothing"
            )
            raise ConfigError(
                f"{name}: the gate of run {record['run_id']} compared against "
                f"{record['compared_against'].get(name, 'an unrecorded reference')} (difference "
                f"{verdict['diff']:+.4f}); the card would show {card}",
                where=f"{RECORD_FILE}: gate.accuracy[{name}]",
                fix="pass the baseline the run was gated against",
            )


def _template_line(err: jinja2.UndefinedError) -> str:
    """`template:line: source` of the innermost template frame (Jinja rewrites tracebacks to them)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.endswith(TEMPLATE)]
    if not frames:
        return str(TEMPLATES / TEMPLATE)
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno}: {(frame.line or '').strip()}"
