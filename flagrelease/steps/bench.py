"""Bench step: serve the image as each side of the comparison and measure it.

The same image serves both sides, as FlagRelease does: `native` with
USE_FLAGGEMS=false and `flaggems` with USE_FLAGGEMS=true, on the same host
with the same prompts, so their ratio is measured in one run.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from flagrelease.cell_facts import served_name
from flagrelease.errors import ServiceError
from flagrelease.perf_metrics import PerfResult
from flagrelease.results import AccuracyResult, FlagGemsRecord, SideResult
from flagrelease.schema import Cell, MatrixFile
from flagrelease.steps import accuracy, flaggems_evidence, loadgen
from flagrelease.steps.smoke import NotReady, run_options, serving

# The flaggems side always runs; without FlagGems in the stack it only flips
# USE_FLAGGEMS, and the record says so (`flaggems_installed`).
SIDES = ("native", "flaggems")


def measure_sides(
    client,
    image: str,
    cell: Cell,
    matrix: MatrixFile,
    weights_dir: Path,
    *,
    owner: str,
    timeout_s: float,
    on_line=print,
) -> dict[str, SideResult]:
    """Measure every side. Sequential by default (one serve stack at a time: what a single
    accelerator allows); with `perf.interleave` both stacks stay up and the repeats
    alternate (native, flaggems, flaggems, native, ...) so that drift on the host hits both alike."""
    plan = cell.model.bench
    assert matrix.source is not None, "a loaded matrix knows its file"
    datasets = [accuracy.load_dataset(matrix.source.parent / a.path, a.name, a.kind) for a in plan.accuracy]
    model = served_name(cell)
    perf = plan.perf
    repeats = perf.repeats if perf else 0
    runs: dict[str, list[list[PerfResult]]] = {side: [] for side in SIDES}
    records: dict[str, FlagGemsRecord] = {}  # what FlagGems recorded on each side

    def perf_repeat(side: str, base_url: str, r: int) -> None:
        assert perf is not None  # called only for `repeats` > 0
        on_line(f"[{side}] perf repeat {r + 1}/{repeats}: concurrency {perf.concurrency}, shapes {perf.shapes}")
        # The same seeds on both sides (same prompts); fresh ones per repeat (no prefix-cache hits).
        runs[side].append(
            loadgen.sweep(
                base_url,
                model,
                perf.concurrency,
                list(perf.shapes),
                perf.num_prompts,
                num_warmups=perf.num_warmups,
                seed=1000 * r,
                request_timeout_s=perf.request_timeout_s,
            )
        )

    def scores(side: str, base_url: str) -> dict[str, AccuracyResult]:
        found = {}
        for spec, dataset in zip(plan.accuracy, datasets, strict=True):
            on_line(f"[{side}] accuracy: {dataset.name} ({len(dataset.questions)} questions)")
            found[dataset.name] = accuracy.run(
                base_url,
                model,
                dataset,
                engine=cell.chip.stack.engine,
                concurrency=spec.concurrency,
                max_tokens=spec.max_tokens,
                samples=spec.samples,
                temperature=spec.temperature,
                top_p=spec.top_p,
            )
        return found

    def serve(stack: ExitStack, side: str) -> tuple[str, float]:
        options = run_options(cell, weights_dir, use_flaggems=side == "flaggems")
        base_url, container, ready_s = stack.enter_context(
            serving(
                client, image, cell, options, owner=owner, timeout_s=timeout_s, on_line=on_line, purpose=f"bench-{side}"
            )
        )
        flaggems_evidence.read_before_stop(stack, cell, side, container, records)
        return base_url, ready_s

    results, started = {}, time.monotonic()
    try:
        if plan.perf is not None and plan.perf.interleave:
            with ExitStack() as stack:
                urls = {side: serve(stack, side) for side in SIDES}
                for r in range(repeats):
                    # ABBA order: neither side always runs first (warmer caches, quieter host).
                    for side in SIDES if r % 2 == 0 else SIDES[::-1]:
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
        raise ServiceError(
            f"serve stack not ready for benchmarking: {err.problem}\n" + "\n".join(err.log.splitlines()[-20:])
        ) from None
    flaggems_evidence.attach(results, records)
    return results


def _side(side: str, ready_s: float, repeats: list[list[PerfResult]], scores: dict, started: float) -> SideResult:
    return SideResult(
        side=side,
        use_flaggems=side == "flaggems",
        ready_seconds=ready_s,
        perf=median_levels(repeats),
        perf_repeats=repeats,
        accuracy=scores,
        seconds=time.monotonic() - started,
    )


def median_levels(repeats: list[list[PerfResult]]) -> list[PerfResult]:
    """Per level, the repeat whose output throughput is the median (an odd count keeps a real run)."""
    if not repeats:
        return []
    chosen = []
    for runs in zip(*repeats, strict=True):
        ranked = sorted(runs, key=lambda r: r.output_throughput)
        chosen.append(ranked[(len(ranked) - 1) // 2])
    return chosen
