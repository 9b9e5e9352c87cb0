"""llama-server's `--threads` on this host: throughput and its spread between windows, quiet and
with other work running, for the cpu cell's engine (the choice behind `threads: 1` in matrix.yaml).

Two containers of the newest local tiny-llama image serve the same generated weights with
`--threads 1` and `--threads 2`, published on 127.0.0.1 only. The script alternates windows
between them (ABBA, the perf gate's own `loadgen.window`), first on the host as it is, then
with `--hogs` busy-looping processes beside them (another job on a shared machine), and
reports per setting the mean output throughput, the coefficient of variation between windows
and the ratio of the two settings measured in the same run.

    .venv/bin/python bench/engine_threads.py --windows 6 --hogs 2 --json /tmp/engine_threads.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flagrelease.steps import loadgen  # noqa: E402
from flagrelease.weights_tiny import make_tiny_llama  # noqa: E402

IMAGE_PREFIX = "flagrelease/flagrelease-cpu-release-model_tiny-llama-"
LEVELS = ((1, 40), (4, 60))  # (concurrency, prompts): about 2 s windows on a quiet host


def newest_image(client: docker.DockerClient) -> str:
    images = [i for i in client.images.list() if any(t.startswith(IMAGE_PREFIX) for t in i.tags)]
    if not images:
        raise SystemExit("no local tiny-llama image: run `flagrelease build -m tiny-llama -c cpu --no-push` first")
    return max(images, key=lambda i: i.attrs["Created"]).id


@contextlib.contextmanager
def servers(client: docker.DockerClient, image: str, weights: Path):
    """{threads: base URL} of one llama-server per setting; the containers always go."""
    started = []
    try:
        urls = {}
        for threads in (1, 2):
            container = client.containers.run(
                image,
                entrypoint=["llama-server"],
                command=["--model", f"/data/weights/{weights.name}", "--alias", "m", "--host", "0.0.0.0"]
                + ["--port", "9010", "--ctx-size", "4096", "--parallel", "4", "--threads", str(threads)],
                volumes={str(weights.parent): {"bind": "/data/weights", "mode": "ro"}},
                ports={"9010/tcp": ("127.0.0.1", None)},
                labels={"org.flagos.flagrelease.owner": "bench-engine-threads"},
                detach=True,
            )
            started.append(container)
            container.reload()
            urls[threads] = f"http://127.0.0.1:{container.attrs['NetworkSettings']['Ports']['9010/tcp'][0]['HostPort']}"
        for url in urls.values():
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"llama-server at {url} not ready in 60 s")
                time.sleep(0.25)
        yield urls
    finally:
        for container in started:
            container.remove(force=True)


def _spin(stop) -> None:
    while not stop.is_set():
        pass


@contextlib.contextmanager
def hogs(count: int):
    stop = multiprocessing.Event()
    procs = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=5)


def measure(urls: dict[int, str], windows: int, seed: int) -> dict[str, dict]:
    found: dict[tuple[int, int], list[float]] = {(t, c): [] for t in urls for c, _ in LEVELS}
    for rep in range(windows):
        for concurrency, prompts in LEVELS:
            for threads in (1, 2) if rep % 2 == 0 else (2, 1):
                result = loadgen.window(
                    urls[threads],
                    "m",
                    input_len=128,
                    output_len=128,
                    num_prompts=prompts,
                    max_concurrency=concurrency,
                    num_warmups=2,
                    seed=seed + 10 * rep + concurrency,
                    request_timeout_s=120,
                )
                found[(threads, concurrency)].append(result.output_throughput)
    report = {}
    for concurrency, _ in LEVELS:
        one, two = found[(1, concurrency)], found[(2, concurrency)]
        report[f"c={concurrency}"] = {
            "threads_1_tok_s": round(statistics.fmean(one)),
            "threads_1_cv": round(statistics.stdev(one) / statistics.fmean(one), 3),
            "threads_2_tok_s": round(statistics.fmean(two)),
            "threads_2_cv": round(statistics.stdev(two) / statistics.fmean(two), 3),
            "ratio_1_over_2": round(statistics.fmean(one) / statistics.fmean(two), 2),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=6, help="windows per setting and level (default 6)")
    parser.add_argument("--hogs", type=int, default=2, help="busy processes beside the second run (default 2; 0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    client = docker.from_env()
    image = newest_image(client)
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_tiny_llama(Path(tmp))
        with servers(client, image, weights) as urls:
            load_before = os.getloadavg()[0]
            report = {
                "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "image": image,
                "load_average_before": round(load_before, 2),
                "as_is": measure(urls, args.windows, seed=0),
            }
            emit(report, args.json)  # now: the contended run may take long (two threads collapse)
            if args.hogs:
                with hogs(args.hogs):
                    report[f"with_{args.hogs}_hogs"] = measure(urls, args.windows, seed=1000)
                emit(report, args.json)


def emit(report: dict, path: Path | None) -> None:
    print(json.dumps(report, indent=2), flush=True)
    if path:
        path.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
