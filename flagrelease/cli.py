"""`flagrelease` command line: a thin Typer front over the steps and flows.

Prefect is imported only by commands that run a flow (its embedded server
costs seconds); listing, rendering and help answer at once.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flagrelease.errors import ConfigError, FlagReleaseError
from flagrelease.compat import ensure_compatible
from flagrelease.matrix import expand, find_matrix, load_matrix, select
from flagrelease.plan import cell_plan
from flagrelease.settings import load_settings

app = typer.Typer(
    help="Release pipeline for the FlagOS stack: chip x model matrix -> tested, published images.\n\n"
    "Example: flagrelease build --model tiny-llama --chip cpu",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err_console = Console(stderr=True)

MatrixOpt = typer.Option(None, "--matrix", "-f", help="matrix file (default: ./matrix.yaml, else the project's)")
ModelOpt = typer.Option(..., "--model", "-m", help="model name from matrix.yaml, e.g. qwen3-4b")
ChipOpt = typer.Option(..., "--chip", "-c", help="chip id (ascend-a3) or vendor family (ascend)")
JsonOpt = typer.Option(False, "--json", help="print a machine-readable summary on stdout")


def _fail(err: FlagReleaseError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"status": "error", "error": err.render(), "exit_code": err.exit_code}))
    err_console.print(f"[bold red]error:[/] {err.render()}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


RegistryOpt = typer.Option(None, "--registry", envvar="FLAGRELEASE_REGISTRY",
                           help="HOST:PORT to push to; default: a local registry on 127.0.0.1:5000, started if needed")
PushOpt = typer.Option(True, "--push/--no-push", help="push to the registry when the gate passed")
SmokeOpt = typer.Option(180.0, "--smoke-timeout", help="seconds a serve stack gets to become ready")
DryRunOpt = typer.Option(False, "--dry-run", help="print the resolved plan and stop")


@app.command()
def build(
    model: str = ModelOpt,
    chip: str = ChipOpt,
    matrix: Optional[Path] = MatrixOpt,
    registry: Optional[str] = RegistryOpt,
    push: bool = PushOpt,
    smoke_timeout: float = SmokeOpt,
    dry_run: bool = DryRunOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Build, smoke-test, benchmark, gate and push one cell per selected chip.

    Examples:
      flagrelease build --model tiny-llama --chip cpu
      flagrelease build --model qwen3-4b --chip ascend --registry harbor.example.com --json
    """
    _release_cells(model, chip, matrix, registry, push, smoke_timeout, dry_run, as_json)


@app.command()
def release(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="only this model"),
    chip: Optional[str] = typer.Option(None, "--chip", "-c", help="only this chip id or vendor family"),
    matrix: Optional[Path] = MatrixOpt,
    registry: Optional[str] = RegistryOpt,
    push: bool = PushOpt,
    smoke_timeout: float = SmokeOpt,
    dry_run: bool = DryRunOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Release the whole matrix (or the cells matching --model/--chip), one cell after another.

    A cell that fails does not stop the others; the exit code is the worst cell's.
    Examples:
      flagrelease release --dry-run
      flagrelease release --chip ascend --registry harbor.example.com
    """
    _release_cells(model, chip, matrix, registry, push, smoke_timeout, dry_run, as_json)


def _release_cells(model, chip, matrix, registry, push, smoke_timeout, dry_run, as_json) -> None:
    try:
        matrix_file = load_matrix(find_matrix(matrix))
        cells = select(matrix_file, chip=chip, model=model) if chip or model else expand(matrix_file)
        ensure_compatible(cells, matrix_file.compatibility, str(matrix_file.source))
        if dry_run:
            _print_plan(cells, matrix_file, load_settings().build)
            return
    except FlagReleaseError as err:
        _fail(err, as_json)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    signal.signal(signal.SIGTERM, _interrupt)  # a cancelled CI job cleans up like Ctrl-C does
    from flows.release_cell import release_cell  # Prefect loads here, not at start-up

    records, failures = [], []
    for cell in cells:
        try:
            records.append(release_cell(model=cell.model_id, chip=cell.chip_id,
                                        matrix=str(matrix) if matrix else None, registry=registry,
                                        push=push, smoke_timeout_s=smoke_timeout))
        except FlagReleaseError as err:
            failures.append(err)
            if getattr(err, "record", None) is not None:
                records.append(err.record)
    if as_json:
        print(json.dumps([_summary(r) for r in records], indent=2))
    else:
        _print_table(records)
    for err in failures:
        err_console.print(f"[bold red]error:[/] {err.render()}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(max(err.exit_code for err in failures))


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _summary(record) -> dict:
    return {
        "cell": record.cell,
        "status": record.status,
        "image": record.image.ref if record.image else None,
        "image_id": record.image.image_id if record.image else None,
        "reused": record.image.reused if record.image else None,
        "tags": record.publish.tags if record.publish else [],
        "repository": f"{record.publish.registry}/{record.publish.repository}" if record.publish else None,
        "digest": record.publish.digest if record.publish else None,
        "smoke": {
            "passed": record.smoke.passed,
            "ready_seconds": record.smoke.ready_seconds,
            "models": record.smoke.models,
            "usage": record.smoke.usage,
        } if record.smoke else None,
        "gate": {
            "verdict": record.gate.verdict,
            "release": record.gate.release,
            "reason": record.gate.reason,
            "accuracy": {v.benchmark: {"verdict": v.verdict, "diff": v.diff, "se": v.se,
                                       "against": record.compared_against.get(v.benchmark)}
                         for v in record.gate.accuracy},
            "perf_levels_failed": sum(p.verdict == "FAIL" for p in record.gate.perf),
        } if record.gate else None,
        "timings": record.timings,
        "stores": [c.model_dump() for c in record.reports.stores] if record.reports else [],
        "card": str(record.reports.card) if record.reports and record.reports.card else None,
        "run_id": record.run_id,
    }


def _print_table(records) -> None:
    """One block per cell: image names are too long for a column layout."""
    for r in records:
        table = Table(title=f"{r.cell}: {r.status}", show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("image", r.image.ref if r.image else "-")
        table.add_row("built", ("reused " if r.image and r.image.reused else "") + (r.image.image_id[:19] if r.image else "-"))
        table.add_row("pull", r.publish.pull_ref if r.publish else "-")
        if r.smoke:
            table.add_row("smoke", f"passed, ready in {r.smoke.ready_seconds:.1f} s, "
                          f"{r.smoke.usage.get('completion_tokens')} tokens" if r.smoke.passed else f"failed: {r.smoke.error}")
        table.add_row("seconds", "  ".join(f"{k} {v}" for k, v in r.timings.items()))
        for copy in (r.reports.stores if r.reports else []):
            table.add_row("stored", f"{copy.files} files in {copy.store}" if copy.ok
                          else f"[yellow]not in {copy.store}: {copy.error}")
        out.print(table)
        if r.gate:
            _print_gate(r.gate, r.compared_against)


def _print_gate(report, against: dict[str, str]) -> None:
    table = Table(title=f"release gate: {report.verdict} ({report.reason})", title_justify="left")
    for column in ("check", "compared against", "candidate − reference", "SE", "verdict"):
        table.add_column(column, overflow="fold")
    colour = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}
    for v in report.accuracy:
        table.add_row(v.benchmark, against.get(v.benchmark, "-"), f"{v.diff:+.3f}",
                      f"{v.se:.3f} ({v.se_method})", f"[{colour[v.verdict]}]{v.verdict}")
    for p in report.perf:
        level = p.level
        table.add_row(f"perf c={level.max_concurrency} {level.input_len}/{level.output_len}",
                      "native side of this run", f"out {level.output_throughput:.0%} / total "
                      f"{level.total_token_throughput:.0%}", "-", f"[{colour[p.verdict]}]{p.verdict}")
    out.print(table)


@app.command()
def weights(
    model: str = typer.Option("tiny-llama", "--model", "-m", help="model whose weights to produce"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory to write the weights into"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Produce a model's weights directory (the tiny model is generated offline).

    Example: flagrelease weights --model tiny-llama --out /data/weights/tiny-llama
    """
    from flagrelease.weights import ensure_weights

    try:
        cell = select(load_matrix(find_matrix(matrix)), model=model)[0]
        path = ensure_weights(cell, out_dir)
    except FlagReleaseError as err:
        _fail(err, False)
    out.print(f"weights for {model} in {path}")



def _print_plan(cells, matrix_file, build) -> None:
    print(json.dumps([cell_plan(c, matrix_file, build) for c in cells], indent=2))


@app.command("matrix")
def matrix_cmd(
    print_plan: bool = typer.Option(False, "--print", help="print the fully resolved plan as JSON (like bake --print)"),
    as_json: bool = JsonOpt,
    chip: Optional[str] = typer.Option(None, "--chip", "-c", help="chip id or vendor family"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model name"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Show the matrix: every cell, its pins and whether it passes the compatibility rules.

    Examples:
      flagrelease matrix
      flagrelease matrix --print --chip ascend
      flagrelease matrix --json --model qwen3-4b
    """
    try:
        matrix_file = load_matrix(find_matrix(matrix))
        cells = select(matrix_file, chip=chip, model=model) if chip or model else expand(matrix_file)
        build = load_settings().build
    except FlagReleaseError as err:
        _fail(err, as_json)
    if print_plan or as_json:
        _print_plan(cells, matrix_file, build)
        return
    table = Table(title=f"{matrix_file.source} — {len(cells)} cells")
    for column in ("cell", "platform", "sdk", "python", "torch", "vllm", "gems", "scale", "rules"):
        table.add_column(column, overflow="fold")
    for cell in cells:
        stack, plan = cell.chip.stack, cell_plan(cell, matrix_file, build)
        torch = stack.torch + (f" / npu {stack.torch_npu}" if stack.torch_npu != "none" else "")
        rules = "ok" if not plan["violations"] else "[red]" + ", ".join(v["rule"] for v in plan["violations"])
        table.add_row(cell.label, cell.chip.platform, f"{cell.chip.sdk.name} {cell.chip.sdk.version}",
                      stack.python, torch, stack.vllm, stack.flaggems, stack.flagscale, rules)
    out.print(table)


@app.command()
def render(
    model: str = ModelOpt,
    chip: str = typer.Option(..., "--chip", "-c", help="chip id, e.g. ascend-a3"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory for the build context (replaced)"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Write a cell's build context (Dockerfile, FlagScale serve config, files) to a directory.

    Example: flagrelease render --model qwen3-4b --chip ascend-a3 --out ./ctx && docker build ./ctx
    """
    from flagrelease.render import render_context

    try:
        matrix_file = load_matrix(find_matrix(matrix))
        cells = select(matrix_file, chip=chip, model=model)
        ensure_compatible(cells, matrix_file.compatibility, str(matrix_file.source))
        if len(cells) != 1:
            raise ConfigError(f"--chip {chip} selects {len(cells)} chips; render takes one chip id",
                              fix="pass a chip id such as " + ", ".join(c.chip_id for c in cells))
        ctx = render_context(cells[0], matrix_file, load_settings().build, out_dir)
    except FlagReleaseError as err:
        _fail(err, False)
    out.print(f"rendered {cells[0].label} into {ctx.path} (context {ctx.context_hash[:12]}): {', '.join(ctx.files)}")


bench_app = typer.Typer(help="Measure a served model on 127.0.0.1 (the steps `build` runs, on their own).",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
UrlOpt = typer.Option(..., "--url", help="OpenAI-compatible base URL on loopback, e.g. http://127.0.0.1:9010")
ServedOpt = typer.Option(..., "--model", "-m", help="served model name, as /v1/models lists it")


def _shape(text: str) -> tuple[int, int]:
    try:
        input_len, output_len = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: write shapes as INPUTxOUTPUT, e.g. 1024x1024") from None
    return input_len, output_len


@bench_app.command("perf")
def bench_perf(
    url: str = UrlOpt,
    model: str = ServedOpt,
    concurrency: str = typer.Option("1,4,16", help="comma-separated max concurrency levels"),
    shape: list[str] = typer.Option(["1024x1024"], help="INPUTxOUTPUT token lengths; repeat for more"),
    num_prompts: int = typer.Option(32, help="measured requests per level"),
    num_warmups: int = typer.Option(1, help="unmeasured requests before each level"),
    request_rate: float = typer.Option(float("inf"), help="requests/s (Poisson); inf sends all at once"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="write results (vllm bench serve names) as JSON"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write a PNG of throughput and TTFT vs. concurrency"),
    as_json: bool = JsonOpt,
) -> None:
    """Sweep concurrency levels and shapes like `vllm bench serve`.

    Example: flagrelease bench perf --url http://127.0.0.1:9010 -m tiny-llama-flagos --concurrency 1,4 --shape 128x128
    """
    from flagrelease import loadgen

    try:
        levels = [int(c) for c in concurrency.split(",")]
        results = loadgen.sweep(url, model, levels, [_shape(s) for s in shape], num_prompts,
                                num_warmups=num_warmups, request_rate=request_rate)
    except (FlagReleaseError, ValueError) as err:
        _fail(err if isinstance(err, FlagReleaseError) else ConfigError(str(err)), as_json)
    summaries = [r.model_dump(mode="json", exclude={"traces"}) for r in results]
    if out_file:
        out_file.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=1))
    if plot:
        loadgen.plot_sweep(results, plot)
    if as_json:
        print(json.dumps(summaries, indent=2))
        return
    table = Table(title=f"{model} @ {url}")
    for column in ("concurrency", "in/out", "ok/failed", "req/s", "out tok/s", "total tok/s", "mean TTFT ms",
                   "p99 TTFT ms", "mean TPOT ms", "mean ITL ms"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r.max_concurrency), f"{r.input_len}/{r.output_len}", f"{r.completed}/{r.failed}",
                      f"{r.request_throughput:.2f}", f"{r.output_throughput:.1f}", f"{r.total_token_throughput:.1f}",
                      f"{r.mean_ttft_ms:.1f}", f"{r.p99_ttft_ms:.1f}", f"{r.mean_tpot_ms:.2f}", f"{r.mean_itl_ms:.2f}")
    out.print(table)


@bench_app.command("accuracy")
def bench_accuracy(
    url: str = UrlOpt,
    model: str = ServedOpt,
    dataset: Path = typer.Option(..., help="JSONL benchmark (see flagrelease/accuracy.py for the format)"),
    kind: str = typer.Option("multiple_choice", help="multiple_choice or exact_match"),
    engine: str = typer.Option("vllm", help="serving engine, to constrain answers its way: vllm, sglang, llama_cpp"),
    concurrency: int = typer.Option(8, help="questions in flight"),
    max_tokens: int = typer.Option(8, help="answer length limit"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="write per-question records as JSONL"),
    as_json: bool = JsonOpt,
) -> None:
    """Score a benchmark on a served model, with per-question records and the standard error.

    Example: flagrelease bench accuracy --url http://127.0.0.1:9010 -m tiny-llama-flagos --dataset datasets/tiny-arith-mc.jsonl --engine llama_cpp
    """
    from flagrelease import accuracy

    try:
        if kind not in ("multiple_choice", "exact_match"):
            raise ConfigError(f"--kind {kind!r} is not multiple_choice or exact_match", where="--kind")
        data = accuracy.load_dataset(dataset, dataset.stem, kind)
        result = accuracy.run(url, model, data, engine=engine, concurrency=concurrency, max_tokens=max_tokens)
    except FlagReleaseError as err:
        _fail(err, as_json)
    if out_file:
        accuracy.write_records(result, out_file)
    summary = result.model_dump(exclude={"results"})
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        out.print(f"{result.benchmark}: {result.correct}/{result.n} = {result.score:.3f} ± {result.se:.3f} (SE)")


@app.command("gate")
def gate_cmd(
    run_dir: Path = typer.Argument(..., help="a release's results directory (holding release.json)"),
    rule: Optional[str] = typer.Option(None, help="re-decide with this rule: statistical or classic"),
    max_drop: Optional[float] = typer.Option(None, help="re-decide with this accuracy margin"),
    matrix: Optional[Path] = MatrixOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Decide (again) a stored release's gate from its raw results, e.g. under the classic rule.

    Example: flagrelease gate ~/.local/share/flagrelease/results/tiny-llama--cpu/<run> --rule classic
    """
    from flagrelease.bench import SideResult, gate_inputs
    from flagrelease.gate import decide

    try:
        record = json.loads((run_dir / "release.json").read_text())
        matrix_file = load_matrix(find_matrix(matrix))
        [cell] = select(matrix_file, chip=record["chip"], model=record["model"])
        sides = {side: _side_from_disk(run_dir, side, data, SideResult) for side, data in record["bench"].items()}
        if set(sides) != {"native", "flaggems"}:
            raise ConfigError(f"{run_dir} holds no benchmark results to gate on", where=str(run_dir / "release.json"))
        policy = cell.model.bench.gate.model_copy(update={k: v for k, v in (("rule", rule), ("max_drop", max_drop))
                                                          if v is not None})
        pairs, ratios, against = gate_inputs(cell, matrix_file, sides["native"], sides["flaggems"])
        report = decide(pairs, ratios, policy)
    except FileNotFoundError as err:
        _fail(ConfigError(f"no release record at {err.filename}", where=str(run_dir)), as_json)
    except FlagReleaseError as err:
        _fail(err, as_json)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        _print_gate(report, against)
    raise typer.Exit(0 if report.release else 4)


def _side_from_disk(run_dir: Path, side: str, data: dict, side_model):
    """A stored side, with its per-question records read back from their JSONL files."""
    data = json.loads(json.dumps(data))
    for name, acc in data["accuracy"].items():
        acc["results"] = [json.loads(line) for line in (run_dir / acc["results"]).read_text().splitlines() if line]
    for level in data["perf"]:
        level.pop("traces", None)
    data["perf_repeats"] = []
    return side_model.model_validate(data)


releases_app = typer.Typer(help="The release ledger: what was released, where, and whether it qualified.",
                           no_args_is_help=True)
app.add_typer(releases_app, name="releases")


def _ledger():
    from flagrelease.ledger import Ledger

    return Ledger(load_settings().ledger_path)


@releases_app.command("list")
def releases_list(
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    chip: Optional[str] = typer.Option(None, "--chip", "-c"),
    qualified: bool = typer.Option(False, "--qualified", help="only releases whose gate passed and were pushed"),
    as_json: bool = JsonOpt,
) -> None:
    """Releases, newest first.

    Example: flagrelease releases list --model qwen3-4b --chip ascend-a3 --qualified
    """
    try:
        rows = _ledger().list(model=model, chip=chip, qualified=True if qualified else None)
    except FlagReleaseError as err:
        _fail(err, as_json)
    if as_json:
        print(json.dumps([{"run_id": r.run_id, "started": r.started.isoformat(), "cell": r.cell, "status": r.status,
                           "image": f"{r.registry}/{r.repository}" if r.repository else None, "tags": list(r.tags),
                           "digest": r.digest} for r in rows], indent=2))
        return
    table = Table(title=f"{len(rows)} release(s)")
    for column in ("run", "started (UTC)", "cell", "status", "tags", "digest"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r.run_id, r.started.strftime("%Y-%m-%d %H:%M"), r.cell, r.status, ", ".join(r.tags),
                      (r.digest or "-")[:19])
    out.print(table)


@releases_app.command("show")
def releases_show(ref: str = typer.Argument(..., help="run id, or image as REPO:TAG or REPO@sha256:...")) -> None:
    """One release's full record.

    Example: flagrelease releases show 127.0.0.1:5000/flagrelease/flagrelease-cpu-release-...:latest
    """
    try:
        print(json.dumps(_ledger().show(ref), indent=2))
    except FlagReleaseError as err:
        _fail(err, False)


@releases_app.command("latest")
def releases_latest(
    model: str = typer.Option(..., "--model", "-m"),
    chip: str = typer.Option(..., "--chip", "-c", help="chip id"),
    as_json: bool = JsonOpt,
) -> None:
    """The newest qualified release of a cell: what a consumer should pull.

    Example: docker pull $(flagrelease releases latest -m qwen3-4b -c ascend-a3)
    """
    try:
        row = _ledger().latest_qualified(model, chip)
        if row is None:
            raise ConfigError(f"no qualified release of {model} x {chip} in the ledger",
                              where=str(load_settings().ledger_path),
                              fix="release the cell, or `flagrelease releases rebuild` from the artifact store")
    except FlagReleaseError as err:
        _fail(err, as_json)
    ref = f"{row.registry}/{row.repository}@{row.digest}"
    print(json.dumps({"run_id": row.run_id, "image": ref, "tags": list(row.tags)}) if as_json else ref)


@releases_app.command("rebuild")
def releases_rebuild(
    source: str = typer.Option("local", help="rebuild from the `local` results or from `s3` (FLAGRELEASE_S3_URL)"),
) -> None:
    """Rebuild the ledger from the JSON records in an artifact store (they are the source of truth)."""
    from flagrelease.artifact_store import store_from_settings

    try:
        settings = load_settings()
        stores = store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir)
        if source == "s3" and len(stores) < 2:
            raise ConfigError("--source s3 needs FLAGRELEASE_S3_URL", where="FLAGRELEASE_S3_URL")
        records = stores[-1 if source == "s3" else 0].list_records()
        _ledger().rebuild(records)
    except FlagReleaseError as err:
        _fail(err, False)
    out.print(f"ledger rebuilt from {len(records)} record(s) in {stores[-1 if source == 's3' else 0].location}")


@app.command()
def card(
    run_dir: Path = typer.Argument(..., help="a released run's results directory"),
    matrix: Optional[Path] = MatrixOpt,
    modelscope_repo: Optional[str] = typer.Option(
        None, "--publish-modelscope", help="also upload the card as README.md of this ModelScope model repo"),
) -> None:
    """(Re)write a released run's model card from its record, optionally publishing it to ModelScope.

    Example: flagrelease card ~/.local/share/flagrelease/results/tiny-llama--cpu/<run>
    """
    from flagrelease.baseline import load_baseline
    from flagrelease.card import write_card

    try:
        record = json.loads((run_dir / "release.json").read_text())
        matrix_file = load_matrix(find_matrix(matrix))
        [cell] = select(matrix_file, chip=record["chip"], model=record["model"])
        plan = cell.model.bench
        baseline = load_baseline(matrix_file.source.parent / plan.reference) if plan.reference else None
        path = write_card(run_dir, cell, baseline)
        if modelscope_repo:
            from flagrelease.modelscope_hub import publish_card

            publish_card(path, modelscope_repo)
    except FileNotFoundError as err:
        _fail(ConfigError(f"no release record at {err.filename}", where=str(run_dir)), False)
    except FlagReleaseError as err:
        _fail(err, False)
    out.print(f"card written to {path}" + (f" and published to modelscope.cn/models/{modelscope_repo}"
                                          if modelscope_repo else ""))
