"""Bench step: serve the image as each side of the comparison and measure it.

The same image serves both sides, as FlagRelease does: `native` with
USE_FLAGGEMS=false and `flaggems` with USE_FLAGGEMS=true, on the same host
with the same prompts, so their ratio is measured in one run.
`gate_inputs` turns the measurements (and the model's reference baseline, when
there is one) into what the gate decides on.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from pydantic import BaseModel

from flagrelease import accuracy, loadgen
from flagrelease.baseline import bench_score, load_baseline
from flagrelease.errors import ServiceError
from flagrelease.gate import BenchScore, PerfRatio, perf_ratios
from flagrelease.perf_metrics import PerfResult
from flagrelease.render import served_name
from flagrelease.schema import NONE, Cell, MatrixFile
from flagrelease.smoke import NotReady, run_options, serving

# The flaggems side always runs; without FlagGems in the stack it only flips
# USE_FLAGGEMS, and the record says so (`flaggems_installed`).
SIDES = ("native", "flaggems")


class SideResult(BaseModel):
    side: str
    use_flaggems: bool
    ready_seconds: float
    perf: list[PerfResult]  # per level, the median-throughput repeat
    perf_repeats: list[list[PerfResult]] = []  # every repeat, kept as measured
    accuracy: dict[str, accuracy.AccuracyResult]
    seconds: float


def measure_sides(client, image: str, cell: Cell, matrix: MatrixFile, weights_dir: Path, *,
                  owner: str, timeout_s: float, on_line=print) -> dict[str, SideResult]:
    """Measure every side. Sequential by default (one serve stack at a time: what a single
    accelerator allows); with `perf.interleave` both stacks stay up and the repeats
    alternate (native, flaggems, flaggems, native, ...) so that drift on the host hits both alike."""
    plan = cell.model.bench
    datasets = [accuracy.load_dataset(matrix.source.parent / a.path, a.name, a.kind) for a in plan.accuracy]
    model = served_name(cell)
    repeats = plan.perf.repeats if plan.perf else 0
    runs: dict[str, list[list[PerfResult]]] = {side: [] for side in SIDES}

    def perf_repeat(side: str, base_url: str, r: int) -> None:
        on_line(f"[{side}] perf repeat {r + 1}/{repeats}: concurrency {plan.perf.concurrency}, "
                f"shapes {plan.perf.shapes}")
        # The same seeds on both sides (same prompts); fresh ones per repeat (no prefix-cache hits).
        runs[side].append(loadgen.sweep(base_url, model, plan.perf.concurrency, [tuple(x) for x in plan.perf.shapes],
                                        plan.perf.num_prompts, num_warmups=plan.perf.num_warmups, seed=1000 * r,
                                        request_timeout_s=plan.perf.request_timeout_s))

    def scores(side: str, base_url: str) -> dict[str, accuracy.AccuracyResult]:
        found = {}
        for spec, dataset in zip(plan.accuracy, datasets):
            on_line(f"[{side}] accuracy: {dataset.name} ({len(dataset.questions)} questions)")
            found[dataset.name] = accuracy.run(base_url, model, dataset, engine=cell.chip.stack.engine,
                                               concurrency=spec.concurrency, max_tokens=spec.max_tokens)
        return found

    def serve(stack: ExitStack, side: str) -> tuple[str, float]:
        options = run_options(cell, weights_dir, use_flaggems=side == "flaggems")
        base_url, _container, ready_s = stack.enter_context(serving(
            client, image, cell, options, owner=owner, timeout_s=timeout_s, on_line=on_line, purpose=f"bench-{side}"))
        return base_url, ready_s

    results, started = {}, time.monotonic()
    try:
        if plan.perf is not None and plan.perf.interleave:
            with ExitStack() as stack:
                urls = {side: serve(stack, side) for side in SIDES}
                for r in range(repeats):
                    # ABBA order: neither side always runs first (warmer caches, quieter host).
                    for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
                        perf_repeat(side, urls[side][0], r)
                for side in SIDES:
                    results[side] = _side(side, urls[side][1], runs[side], scores(side, urls[side][0]), started)
        else:
            for side in SIDES:
                with ExitStack() as stack:
                    base_url, ready_s = serve(stack, side)
                    for r in range(repeats):
                        perf_repeat(side, base_url, r)
                    results[side] = _side(side, ready_s, runs[side], scores(side, base_url), started)
    except NotReady as err:
        raise ServiceError(f"serve stack not ready for benchmarking: {err.problem}\n"
                           + "\n".join(err.log.splitlines()[-20:])) from None
    return results


def _side(side: str, ready_s: float, repeats: list[list[PerfResult]], scores: dict, started: float) -> SideResult:
    return SideResult(side=side, use_flaggems=side == "flaggems", ready_seconds=ready_s,
                      perf=median_levels(repeats), perf_repeats=repeats, accuracy=scores,
                      seconds=time.monotonic() - started)


def median_levels(repeats: list[list[PerfResult]]) -> list[PerfResult]:
    """Per level, the repeat whose output throughput is the median (an odd count keeps a real run)."""
    if not repeats:
        return []
    chosen = []
    for runs in zip(*repeats):
        ranked = sorted(runs, key=lambda r: r.output_throughput)
        chosen.append(ranked[(len(ranked) - 1) // 2])
    return chosen


def flaggems_installed(cell: Cell) -> bool:
    return cell.chip.stack.flaggems != NONE


def gate_inputs(cell: Cell, matrix: MatrixFile, native: SideResult, candidate: SideResult
                ) -> tuple[dict[str, tuple[BenchScore, BenchScore]], list[PerfRatio], dict[str, str]]:
    """Accuracy pairs per benchmark and perf ratios, with what each is compared against.

    Accuracy: against the model's reference-stack baseline where it has that
    benchmark, else against the native side of this run (paired per question).
    Speed: against the native side of this run, level by level.
    """
    plan = cell.model.bench
    baseline = load_baseline(matrix.source.parent / plan.reference) if plan.reference else None
    pairs, against = {}, {}
    for name, result in candidate.accuracy.items():
        cand = BenchScore(score=result.score, n=result.n, per_question=result.per_question())
        if baseline is not None and name in baseline.benchmarks:
            base_dir = (matrix.source.parent / plan.reference).parent
            pairs[name] = (bench_score(baseline, name, base_dir), cand)
            against[name] = f"baseline {baseline.stack}"
        else:
            nat = native.accuracy[name]
            pairs[name] = (BenchScore(score=nat.score, n=nat.n, per_question=nat.per_question()), cand)
            against[name] = "native side of this run"
    ratios = perf_ratios(native.perf, candidate.perf) if candidate.perf else []
    return pairs, ratios, against


