"""Proof that FlagGems ran: the operators it recorded, per side, and whether the sides differ.

FlagGems writes a record of the operators it serves when it is enabled with
`record=True` (`flag_gems.enable(record=True, once=True, path=...)`): FlagScale 0.8's
vLLM backend writes /tmp/gems_oplist.log.txt, vllm-plugin-FL the file named by
FLAGGEMS_ENABLE_OPLIST_PATH (default /tmp/flaggems_enable_oplist.txt). FlagRelease's
own tooling takes that list as the authority on whether FlagOS ran. Each operator
logs one `GEMS <NAME>` line (once per call site with `once=True`, per call without):

    [DEBUG] flag_gems.ops.mm: GEMS MM                                     FlagGems 3.x / 4.x
    [DEBUG] flag_gems.ops.mm.general_mm: GEMS MM, [mm scenario]: general  FlagGems 5.x (+ funcName)
    [DEBUG] flag_gems.fused.reshape_and_cache: GEMS RESHAPE_AND_CACHE     fused operators
    DEBUG:root:GEMS ADD                                                   FlagGems 2.x (root logger)

A comparison of the `flaggems` side with the `native` side means something only when
FlagGems served operators on the first and none on the second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flagrelease.results import FlagGemsRecord

# "GEMS MM", "GEMS ADD_", "GEMS LAYERNORM FORWARD"; details after a comma are not the name.
_OPERATOR = re.compile(r"\bGEMS ([A-Za-z0-9_]+(?: [A-Za-z0-9_]+)*)")


def operators(lines: Iterable[str]) -> list[str]:
    """The distinct operators a FlagGems record names, sorted: `GEMS RMS_NORM` -> `rms_norm`.
    Lines without a `GEMS <NAME>` entry (other log output) name none."""
    found = set()
    for line in lines:
        match = _OPERATOR.search(line)
        if match:
            found.add(match.group(1).lower().replace(" ", "_"))
    return sorted(found)


def sides_problem(native: FlagGemsRecord | None, flaggems: FlagGemsRecord | None) -> str | None:
    """Why the two sides cannot be told apart as FlagGems vs native, or None when they can
    (or when the stack has no FlagGems and neither side was looked at)."""
    if native is None and flaggems is None:
        return None
    problems = []
    if flaggems is None or not flaggems.operators:
        where = f"at {flaggems.path}" if flaggems is not None else ""
        state = "no record" if flaggems is None or not flaggems.present else "an empty record"
        problems.append(f"the flaggems side left {state} {where}".rstrip() + " of FlagGems operators")
    if native is not None and native.operators:
        shown = ", ".join(native.operators[:8]) + (", ..." if len(native.operators) > 8 else "")
        problems.append(f"FlagGems served {len(native.operators)} operator(s) on the native side ({shown})")
    return "; ".join(problems) or None
