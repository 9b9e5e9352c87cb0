"""How long does `flagrelease watch` take to decide, once the index has answered?

The index is read once (PyPI by default: torch alone lists ~1,000 files), then the
decision (`flagrelease.watch.propose`: which releases each chip's image can install, and
the search for the newest rows the rules allow) runs over the project's matrix, `--repeats`
times, in two variants alternating which goes first:

  cached     as shipped: the wheel tags a python/platform accepts are made once
  uncached   those tags made again for every file (what the first version did)

Both must propose the same candidates. Reported: median [min-max] of each, and the ratio
uncached/cached computed within each repeat (CPU time of this process, less sensitive to other
work on a shared machine than wall time, which is shown too).

    .venv/bin/python bench/watch_search.py --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from flagrelease import index_pins
from flagrelease.adapters.package_index import PackageIndex
from flagrelease.matrix import expand, load_matrix
from flagrelease.steps.watch import chips_in_cells
from flagrelease.watch import propose

ROOT = Path(__file__).resolve().parent.parent


def timed(run) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="https://pypi.org/simple/")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    matrix = load_matrix(ROOT / "matrix.yaml")
    by_chip = chips_in_cells(expand(matrix))
    projects = sorted({p.project for c, cells in by_chip.items() for p in index_pins.index_pins(c, cells[0].chip)})
    with PackageIndex(args.index, ca_bundle=None) as index:
        releases = {p: index.project(p) for p in projects}
    files = sum(len(f.files) for f in releases.values() if f is not None)
    uncached = index_pins.supported_tags.__wrapped__

    def decide():
        return propose(by_chip, matrix.compatibility, releases, matrix.watch.prereleases)[1]

    def decide_uncached():
        with mock.patch.object(index_pins, "supported_tags", uncached):
            return decide()

    samples: dict[str, list[tuple[float, float]]] = {"cached": [], "uncached": []}
    ratios = []
    for repeat in range(args.repeats):
        order = [("cached", decide), ("uncached", decide_uncached)]
        results = {}
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            index_pins.supported_tags.cache_clear()  # the cached variant pays for its first tags too
            wall, cpu, results[name] = timed(run)
            samples[name].append((wall, cpu))
        assert results["cached"] == results["uncached"], "the variants proposed different candidates"
        ratios.append(samples["uncached"][-1][1] / samples["cached"][-1][1])

    def show(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"

    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.machine()}, load {load}")
    cells = sum(map(len, by_chip.values()))
    print(f"{len(by_chip)} chips, {cells} cells, {len(projects)} projects, {files} files on {index.label}")
    for name, values in samples.items():
        print(f"{name:9} cpu s {show([c for _, c in values])}  wall s {show([w for w, _ in values])}")
    print(f"uncached/cached (cpu, per repeat): {show(ratios)}")


if __name__ == "__main__":
    main()
