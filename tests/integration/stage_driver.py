"""`flagrelease` as a user runs it, with a marker file written when one stage starts.

    python stage_driver.py STAGE MARKER build --model tiny-llama --chip cpu ...

The fault tests send SIGTERM or SIGINT once the marker appears, so the signal reaches the
release in that stage. Build, smoke, bench, publish (its first push, the chip stack's) and
report take seconds of real work and are signalled while it runs. Preflight and gate take
milliseconds: no signal sent from outside could land in them, so the run waits there
(bounded) for the signal to arrive.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import flows.release_cell as release_cell
from flagrelease.cli import app
from flagrelease.steps import bench, build, gate, publish, report, smoke

STEPS = {
    "preflight": (release_cell, "preflight"),
    "build": (build, "build_image"),
    "smoke": (smoke, "smoke_test"),
    "bench": (bench, "measure_sides"),
    "gate": (gate, "judge"),
    "publish": (publish, "push_stack"),  # the chip stack goes first: seconds of upload
    "report": (report, "publish_reports"),
}
HELD = {"preflight", "gate"}
HOLD_SECONDS = 30


def mark(stage: str, marker: Path) -> None:
    module, name = STEPS[stage]
    step = getattr(module, name)

    @functools.wraps(step)
    def started(*args, **kwargs):
        marker.write_text(stage)
        until = time.monotonic() + (HOLD_SECONDS if stage in HELD else 0)
        while time.monotonic() < until:
            time.sleep(0.05)
        return step(*args, **kwargs)

    setattr(module, name, started)


if __name__ == "__main__":
    mark(sys.argv[1], Path(sys.argv[2]))
    app(args=sys.argv[3:], prog_name="flagrelease")
