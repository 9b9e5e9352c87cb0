"""Bench step: serve the image as each side of the comparison and measure it.

The same image serves both sides, as FlagRelease does: `native` and `flaggems`, each with
the environment the chip's launcher declares for it (USE_FLAGGEMS=false/true under
FlagScale; VLLM_PLUGINS, USE_FLAGGEMS, VLLM_FL_* under vllm-plugin-FL), on the same host
with the same prompts, so their ratio is measured in one run.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

from flagrelease.cell_facts import served_name, side_env
from flagrelease.errors import ServiceError
from flagrelease.perf_metrics import PerfResult
from flagrelease.results import AccuracyResult, FlagGemsRecord, SideResult
from flagrelease.schema import SIDES, Cell, MatrixFile, PerfPlan, Side
from flagrelease.steps import accuracy, flaggems_evidence, loadgen
from flagrelease.steps.gate import perf_undecided
from flagrelease.steps.smoke import NotReady, run_options, serving

# The flaggems side always runs; without FlagGems in the stack it only switches the
# environment, and the record says so (`flaggems_installed`).
# Seeds of the sizing windows: apart from the pairs' (1000 * pair + level), so none repeats their prompts.
SIZING_SEED = 10**6


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
    home: str = "",
) -> dict[str, SideResult]:
    """Measure every side. Every perf level is measured in `perf.repeats` pairs of windows,
    one window per side with the same prompts. With `perf.interleave` both stacks stay up
    and a pair's windows run back to back in ABBA order (native, flaggems, then flaggems,
    native), so drift on the host hits both alike; otherwise one stack at a time (what a
    single accelerator allows) and the i-th windows of the two sides form a pair."""
    plan = cell.model.bench
    assert matrix.source is not None, "a loaded matrix knows its file"
    datasets = [accuracy.load_dataset(matrix.source.parent / a.path, a.name, a.kind) for a in plan.accuracy]
    model = served_name(cell)
    perf = plan.perf
    levels = [(shape, c) for shape in perf.shapes for c in perf.concurrency] if perf else []
    # windows[side][pair][level]; sizes[level][pair]: the prompts of that pair's windows, on both sides.
    windows: dict[str, list[list[PerfResult]]] = {
        side: [[] for _ in range(perf.repeats if perf else 0)] for side in SIDES
    }
    sizes: list[list[int]] = [[] for _ in levels]
    # One unpaired window per level, only to learn its request rate: the first pair is then as
    # long as the rest (`num_prompts` alone can be over in half a second, a pair of pure noise).
    sizing: dict[int, PerfResult] = {}
    records: dict[str, FlagGemsRecord] = {}  # what FlagGems recorded on each side

    def run(base_url: str, index: int, num_prompts: int, seed: int) -> PerfResult:
        assert perf is not None  # there are levels only with a perf plan
        (input_len, output_len), concurrency = levels[index]
        return loadgen.window(
            base_url,
            model,
            input_len=input_len,
            output_len=output_len,
            num_prompts=num_prompts,
            max_concurrency=concurrency,
            num_warmups=perf.num_warmups,
            seed=seed,
            request_timeout_s=perf.request_timeout_s,
        )

    def window(side: str, base_url: str, index: int, pair: int) -> None:
        assert perf is not None  # there are levels only with a perf plan
        (input_len, output_len), concurrency = levels[index]
        level = f"perf c={concurrency} {input_len}/{output_len}"
        if index not in sizing:
            on_line(f"[{side}] {level}, sizing window (not compared): {perf.num_prompts} prompts")
            sizing[index] = run(base_url, index, perf.num_prompts, seed=SIZING_SEED + index)
        if len(sizes[index]) <= pair:  # the pair's first window decides its size
            earlier = [sizing[index]] + [w[index] for runs in windows.values() for w in runs[:pair]]
            sizes[index].append(window_prompts(perf, earlier))
        on_line(f"[{side}] {level}, pair {pair + 1}/{len(windows[side])}: {sizes[index][pair]} prompts")
        # The same seed on both sides of a pair (the same prompts); a fresh one per pair and level,
        # so no window finds its prompts in the server's prefix cache.
        windows[side][pair].append(run(base_url, index, sizes[index][pair], seed=1000 * pair + index))

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

    def serve(stack: ExitStack, side: Side) -> tuple[str, float]:
        options = run_options(cell, weights_dir, side=side, cpus=plan.side_cpus.get(side))
        base_url, container, ready_s = stack.enter_context(
            serving(
                client,
                image,
                cell,
                options,
                owner=owner,
                timeout_s=timeout_s,
                on_line=on_line,
                purpose=f"bench-{side}",
                home=home,
            )
        )
        flaggems_evidence.read_before_stop(stack, cell, side, container, records)
        return base_url, ready_s

    results: dict[str, SideResult] = {}
    started = time.monotonic()
    pairs = range(perf.repeats) if perf else range(0)
    try:
        if perf is not None and perf.interleave:
            with ExitStack() as stack:
                urls = {side: serve(stack, side) for side in SIDES}
                for index in range(len(levels)):
                    for pair in pairs:
                        # ABBA: neither side always runs first (warmer caches, quieter host).
                        for side in SIDES if pair % 2 == 0 else SIDES[::-1]:
                            window(side, urls[side][0], index, pair)
                while perf.max_repeats and len(windows["native"]) < perf.max_repeats:
                    undecided = perf_undecided(windows["native"], windows["flaggems"], plan.gate)
                    if not undecided:
                        break
                    pair = len(windows["native"])
                    on_line(f"[perf] {', '.join(undecided)} not decided after {pair} pairs: one more pair")
                    for side in SIDES:
                        windows[side].append([])
                    for index in range(len(levels)):
                        for side in SIDES if pair % 2 == 0 else SIDES[::-1]:
                            window(side, urls[side][0], index, pair)
                for side in SIDES:
                    url, ready_s = urls[side]
                    results[side] = _side(cell, side, ready_s, windows[side], scores(side, url), started)
        else:
            for side in SIDES:
                with ExitStack() as stack:
                    base_url, ready_s = serve(stack, side)
                    for index in range(len(levels)):
                        for pair in pairs:
                            window(side, base_url, index, pair)
                    results[side] = _side(cell, side, ready_s, windows[side], scores(side, base_url), started)
    except NotReady as err:
        raise ServiceError(
            f"serve stack not ready for benchmarking: {err.problem}\n" + "\n".join(err.log.splitlines()[-20:])
        ) from None
    flaggems_evidence.attach(results, records)
    return results


def window_prompts(perf: PerfPlan, earlier: list[PerfResult]) -> int:
    """Prompts in a window: enough for `window_s` seconds at the rate earlier windows of the
    level ran (a handful of requests is over in a scheduler hiccup), never fewer than
    `num_prompts`."""
    rate = statistics.median(r.request_throughput for r in earlier)
    return min(perf.max_prompts, max(perf.num_prompts, math.ceil(perf.window_s * rate)))


def _side(
    cell: Cell, side: Side, ready_s: float, repeats: list[list[PerfResult]], scores: dict, started: float
) -> SideResult:
    return SideResult(
        side=side,
        use_flaggems=side == "flaggems",
        env=side_env(cell, side),
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
