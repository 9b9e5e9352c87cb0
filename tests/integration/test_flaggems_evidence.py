"""Reading FlagGems' operator record out of a real container of the cpu image.

No FlagGems runs on these machines (it needs a Triton backend), so the container writes a
record in FlagGems' own format, handed in through its environment, at the path the
bench reads; everything from there on is the real code path: the Engine's archive API,
the streamed tar, the parser, and the bench's hook on the side's ExitStack."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack

import pytest

from flagrelease.adapters.docker_engine import OWNER_LABEL
from flagrelease.matrix import load_matrix, select
from flagrelease.results import FlagGemsRecord
from flagrelease.steps.flaggems_evidence import read_before_stop, read_record
from tests.conftest import ROOT

MATRIX = load_matrix(ROOT / "matrix.yaml")
ASCEND = select(MATRIX, chip="ascend-a3", model="qwen3-4b")[0]  # a stack with FlagGems
CPU = select(MATRIX, chip="cpu", model="tiny-llama")[0]  # one without
PATH = ASCEND.chip.stack.flaggems_record
# As FlagGems 4.x's record handler writes it ([%(levelname)s] %(name)s: %(message)s).
RECORD = (
    "[DEBUG] flag_gems.ops.fill: GEMS FILL_SCALAR_\n"
    "[DEBUG] flag_gems.ops.mm: GEMS MM, [mm scenario]: general, [shape info]: [-, 16, 2560, 9728](batch, M, N, K)\n"
    "[DEBUG] flag_gems.fused.reshape_and_cache: GEMS RESHAPE_AND_CACHE\n"
    "[DEBUG] flag_gems.ops.rms_norm: GEMS RMS_NORM\n"
)


@pytest.fixture
def container(released, docker_client):
    """The released cpu image, writing the record from its environment (and, without `once`,
    a record that grows by a line per call: 300k lines here), then idling."""
    script = (
        f'printf "%s" "$GEMS_RECORD" > {PATH} '
        f"&& yes '[DEBUG] flag_gems.ops.mm: GEMS MM' | head -n 300000 >> {PATH} "
        f"&& touch /tmp/written && exec sleep 300"
    )
    found = docker_client.containers.run(
        released["image_id"],
        entrypoint=["/bin/sh", "-c", script],
        environment={"GEMS_RECORD": RECORD},
        detach=True,
        labels={OWNER_LABEL: f"test-{uuid.uuid4().hex[:8]}"},
    )
    try:
        deadline = time.monotonic() + 60
        while read_record(found, "/tmp/written").present is False:
            assert time.monotonic() < deadline, found.logs().decode()
            time.sleep(0.2)
        yield found
    finally:
        found.remove(force=True)


def test_the_record_is_read_from_the_container_and_parsed(container):
    record = read_record(container, PATH)
    assert record == FlagGemsRecord(
        path=PATH, present=True, operators=["fill_scalar_", "mm", "reshape_and_cache", "rms_norm"]
    )


def test_no_record_and_a_directory_are_no_record(container):
    assert read_record(container, "/tmp/flaggems_enable_oplist.txt") == FlagGemsRecord(
        path="/tmp/flaggems_enable_oplist.txt", present=False
    )
    assert read_record(container, "/tmp").present is False


def test_the_bench_hook_reads_each_side_before_its_container_stops(container):
    records: dict[str, FlagGemsRecord] = {}
    with ExitStack() as stack:
        stack.callback(lambda: records.setdefault("removed-after-read", FlagGemsRecord(path="", present=False)))
        read_before_stop(stack, ASCEND, "flaggems", container, records)
        read_before_stop(stack, CPU, "native", container, records)  # no FlagGems: nothing to read
    assert list(records) == ["flaggems", "removed-after-read"]  # read first, while the container ran
    assert records["flaggems"].operators == ["fill_scalar_", "mm", "reshape_and_cache", "rms_norm"]


def test_a_failed_side_is_not_read(container):
    records: dict[str, FlagGemsRecord] = {}
    with pytest.raises(RuntimeError, match="measurement failed"), ExitStack() as stack:
        read_before_stop(stack, ASCEND, "flaggems", container, records)
        raise RuntimeError("measurement failed")
    assert records == {}
