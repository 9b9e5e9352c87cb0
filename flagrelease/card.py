"""Model card: the Markdown a registry consumer reads to pull, run and trust one release.

Rendered from the stored release record (release.json) and the cell it was built
from. Every number comes from the record, or, in the reference column, from the
baseline the gate compared against; none is typed into the template. The
template is strict: a field the record lacks stops the card, naming the line.

    write_card(run_dir, cell, baseline)  # run_dir/release.json -> run_dir/card.md
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import jinja2

from flagrelease.baseline import Baseline
from flagrelease.errors import ConfigError
from flagrelease.render import pins, serve_config, served_name
from flagrelease.schema import Cell

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE = "model_card.md.j2"
RECORD = "release.json"
CARD = "card.md"
# Where the Dockerfile templates COPY the rendered serve config inside the image.
SERVE_CONF = "/workspace/serve/conf"
# The gate's diff is candidate - reference from the same floats; only JSON rounding separates them.
TOLERANCE = 1e-9


def render_card(record: dict, cell: Cell, baseline: Baseline | None) -> str:
    """The card for a released run; `record` is release.json as stored (raw results by file name)."""
    run = record.get("run_id", "?")
    if record.get("status") != "released":
        raise ConfigError(f"run {run} has status {record.get('status')!r}: only a released run gets a card",
                          where=RECORD, fix="publish the release first (gate passed, image pushed)")
    if record.get("pins") != pins(cell):
        raise ConfigError(f"run {run} was not built from cell {cell.label} as it stands now (pins differ)",
                          where=f"{RECORD}: pins", fix="render the card with the matrix the run was built from")
    _, serve_list = serve_config(cell)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)  # Markdown, not HTML
    try:
        text = env.get_template(TEMPLATE).render(
            record=record, cell=cell, baseline=baseline, served_name=served_name(cell), serve_list=serve_list,
            serve_conf=SERVE_CONF, port=cell.model.serve.engine_args["port"])
    except jinja2.UndefinedError as err:
        raise ConfigError(f"release record of run {run} lacks a field the card needs: {err.message}",
                          where=_template_line(err), fix="render the card from the complete release.json") from None
    _check_reference(record, baseline)
    return text


def write_card(run_dir: Path, cell: Cell, baseline: Baseline | None) -> Path:
    path = run_dir / RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no release record at {path}", where=str(run_dir)) from None
    out = run_dir / CARD
    out.write_text(render_card(record, cell, baseline))
    return out


def _check_reference(record: dict, baseline: Baseline | None) -> None:
    """The reference column must be what the gate compared against: a baseline edited since
    the run would otherwise show numbers the gate never saw. Runs after rendering, so
    every field read here is known to exist."""
    for verdict in record["gate"]["accuracy"]:
        name = verdict["benchmark"]
        candidate = record["bench"]["flaggems"]["accuracy"][name]["score"]
        if baseline is not None and name in baseline.benchmarks:
            shown, reference = f"baseline {baseline.stack}", baseline.benchmarks[name].score
        else:
            shown, reference = "native side of this run", record["bench"]["native"]["accuracy"][name]["score"]
        if abs(candidate - reference - verdict["diff"]) > TOLERANCE:
            raise ConfigError(
                f"{name}: the gate of run {record['run_id']} compared against "
                f"{record['compared_against'].get(name, 'an unrecorded reference')} (difference "
                f"{verdict['diff']:+.4f}); the card would show {shown}, {reference:.4f} ({candidate - reference:+.4f})",
                where=f"{RECORD}: gate.accuracy[{name}]", fix="pass the baseline the run was gated against")


def _template_line(err: jinja2.UndefinedError) -> str:
    """`template:line: source` of the innermost template frame (Jinja rewrites tracebacks to them)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.endswith(TEMPLATE)]
    if not frames:
        return str(TEMPLATES / TEMPLATE)
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno}: {(frame.line or '').strip()}"
