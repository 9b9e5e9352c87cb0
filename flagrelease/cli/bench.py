"""`flagrelease bench perf|accuracy` and `flagrelease gate`: the measuring steps on their own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional, cast, get_args

import typer
from pydantic import ValidationError
from rich.table import Table

from flagrelease.cli.common import JsonOpt, MatrixOpt, at_least, choice, fail, out, output_file, print_gate
from flagrelease.errors import ConfigError, FlagReleaseError, did_you_mean, excerpt
from flagrelease.matrix import find_matrix, load_matrix, select
from flagrelease.schema import GatePolicy

if TYPE_CHECKING:  # results pulls in numpy: not at start-up of every command
    from flagrelease.results import Kind

bench_app = typer.Typer(
    help="Measure a served model on 127.0.0.1 (the steps `build` runs, on their own).", no_args_is_help=True
)
UrlOpt = typer.Option(..., "--url", help="OpenAI-compatible base URL on loopback, e.g. http://127.0.0.1:9010")
ServedOpt = typer.Option(..., "--model", "-m", help="served model name, as /v1/models lists it")


def _shape(text: str) -> tuple[int, int]:
    try:
        input_len, output_len = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"--shape {excerpt(text)} is not INPUTxOUTPUT", where="--shape", fix="e.g. --shape 1024x1024"
        ) from None
    at_least(input_len, 1, "--shape input length")
    at_least(output_len, 1, "--shape output length")
    return input_len, output_len


def _levels(text: str) -> list[int]:
    try:
        levels = [int(c) for c in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--concurrency {excerpt(text)} is not a comma-separated list of numbers",
            where="--concurrency",
            fix="e.g. --concurrency 1,4,16",
        ) from None
    for level in levels:
        at_least(level, 1, "--concurrency level")
    return levels


def _loopback(url: str) -> str:
    from flagrelease.adapters.serve_client import loopback_url

    try:
        return loopback_url(url)
    except ValueError as err:
        raise ConfigError(str(err), where="--url", fix="publish the server on 127.0.0.1, pass that address") from None


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
    from flagrelease.steps import loadgen

    try:
        url, levels, shapes = _loopback(url), _levels(concurrency), [_shape(s) for s in shape]
        at_least(num_prompts, 1, "--num-prompts")
        at_least(num_warmups, 0, "--num-warmups")
        if not request_rate > 0:  # inf (all at once) is allowed
            raise ConfigError(f"--request-rate {request_rate:g} must be above 0", where="--request-rate")
        output_file(out_file, "--out")
        output_file(plot, "--plot")
        results = loadgen.sweep(
            url,
            model,
            levels,
            shapes,
            num_prompts,
            num_warmups=num_warmups,
            request_rate=request_rate,
        )
    except (FlagReleaseError, ValueError) as err:
        fail(err if isinstance(err, FlagReleaseError) else ConfigError(str(err)), as_json)
    summaries = [r.model_dump(mode="json", exclude={"traces"}) for r in results]
    if out_file:
        out_file.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=1))
    if plot:
        loadgen.plot_sweep(results, plot)
    if as_json:
        print(json.dumps(summaries, indent=2))
        return
    table = Table(title=f"{model} @ {url}")
    for column in (
        "concurrency",
        "in/out",
        "ok/failed",
        "req/s",
        "out tok/s",
        "total tok/s",
        "mean TTFT ms",
        "p99 TTFT ms",
        "mean TPOT ms",
        "mean ITL ms",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.max_concurrency),
            f"{r.input_len}/{r.output_len}",
            f"{r.completed}/{r.failed}",
            f"{r.request_throughput:.2f}",
            f"{r.output_throughput:.1f}",
            f"{r.total_token_throughput:.1f}",
            f"{r.mean_ttft_ms:.1f}",
            f"{r.p99_ttft_ms:.1f}",
            f"{r.mean_tpot_ms:.2f}",
            f"{r.mean_itl_ms:.2f}",
        )
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
    samples: int = typer.Option(1, min=1, help="answers sampled per question, scored avg@k"),
    temperature: float = typer.Option(0.0, min=0.0, help="sampling temperature (above 0 when --samples > 1)"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="write per-question records as JSONL"),
    as_json: bool = JsonOpt,
) -> None:
    """Score a benchmark on a served model, with per-question records and the standard error.

    Example:
      flagrelease bench accuracy --url http://127.0.0.1:9010 -m tiny-llama-flagos \\
        --dataset datasets/tiny-arith-mc.jsonl --engine llama_cpp
    """
    from flagrelease.steps import accuracy

    try:
        url = _loopback(url)
        choice(kind, ("multiple_choice", "exact_match"), "--kind")
        choice(engine, ("vllm", "sglang", "llama_cpp"), "--engine")
        at_least(concurrency, 1, "--concurrency")
        at_least(max_tokens, 1, "--max-tokens")
        if samples > 1 and temperature == 0:
            raise ConfigError(
                f"--samples {samples} at temperature 0 gives the same answer {samples} times",
                where="--temperature",
                fix="add --temperature 0.6",
            )
        output_file(out_file, "--out")
        data = accuracy.load_dataset(dataset, dataset.stem, cast("Kind", kind))
        result = accuracy.run(
            url,
            model,
            data,
            engine=engine,
            concurrency=concurrency,
            max_tokens=max_tokens,
            samples=samples,
            temperature=temperature,
        )
    except FlagReleaseError as err:
        fail(err, as_json)
    if out_file:
        accuracy.write_records(result, out_file)
    summary = result.model_dump(exclude={"results"})
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        at = f" avg@{samples}" if samples > 1 else ""
        out.print(
            f"{result.benchmark}{at}: {result.correct}/{result.n * samples} = {result.score:.3f} ± {result.se:.3f} (SE)"
        )


def gate_cmd(
    run_dir: Path = typer.Argument(..., help="a release's results directory (holding release.json)"),
    rule: Optional[str] = typer.Option(None, help="re-decide with this rule: statistical or classic"),
    max_drop: Optional[float] = typer.Option(
        None, help="re-decide with this accuracy margin, a fraction: 0.05 allows a drop of 5 points"
    ),
    matrix: Optional[Path] = MatrixOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Decide (again) a stored release's gate from its raw results, e.g. under the classic rule.

    Example: flagrelease gate ~/.local/share/flagrelease/results/tiny-llama--cpu/<run> --rule classic
    """
    from flagrelease.record import ReleaseRecord
    from flagrelease.settings import load_settings
    from flagrelease.steps import reference
    from flagrelease.steps.gate import judge
    from flagrelease.steps.report import load_sides

    try:
        updates = _policy_options(rule, max_drop)
        record = ReleaseRecord.load(run_dir)
        matrix_file = load_matrix(find_matrix(matrix))
        [cell] = select(matrix_file, chip=record.chip, model=record.model)
        if set(record.bench) != {"native", "flaggems"}:
            raise ConfigError(
                f"{run_dir} holds no benchmark results to gate on (sides: {', '.join(record.bench) or 'none'})",
                where=f"{run_dir}: bench",
                fix="gate a run that got as far as its benchmarks (status gated or released)",
            )
        policy = GatePolicy.model_validate(cell.model.bench.gate.model_dump() | updates)
        # Against the very reference run this release was gated against, not a newer one.
        pinned = next((s.run_id for s in record.reference.values() if s.run_id), None)
        against = reference.resolve(cell, matrix_file, load_settings(), run=pinned)
        try:
            report, compared = judge(load_sides(run_dir, record), against, policy)
        except ConfigError as err:  # the record's sides do not fit together: name the run
            raise ConfigError(err.problem, where=f"{run_dir}: {err.where}", fix=err.fix) from None
    except FlagReleaseError as err:
        fail(err, as_json)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        print_gate(report, {name: score.against for name, score in compared.items()})
    raise typer.Exit(0 if report.release else 4)


def _policy_options(rule: str | None, max_drop: float | None) -> dict[str, object]:
    """--rule and --max-drop, checked before anything is read."""
    updates: dict[str, object] = {}
    if rule is not None:
        rules = get_args(GatePolicy.model_fields["rule"].annotation)
        if rule not in rules:
            raise ConfigError(
                f"--rule {excerpt(rule)} is not a gate rule{did_you_mean(rule, rules)}",
                where="--rule",
                fix=f"use one of: {', '.join(rules)} (docs/gates.md explains them)",
            )
        updates["rule"] = rule
    if max_drop is not None:
        try:
            GatePolicy(max_drop=max_drop)
        except ValidationError as err:
            raise ConfigError(
                f"--max-drop {max_drop:g}: {str(err.errors()[0]['msg']).removeprefix('Value error, ')}",
                where="--max-drop",
                fix="give the largest accuracy drop allowed as a fraction, e.g. 0.05 for 5 points",
            ) from None
        updates["max_drop"] = max_drop
    return updates
