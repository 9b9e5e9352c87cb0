"""The launcher as the image holds it: serve/launch.json, read by the image's entrypoint.

Rendered from dockerfiles/launchers/<name>.json.j2 (the command and how the engine is followed)
plus the launcher's sides from matrix.yaml (the environment of the native and FlagOS sides).
The entrypoint, dockerfiles/files/flagrelease-serve.py, runs on the image's own Python with
the standard library only, so this shape is all it relies on.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from flagrelease.schema import EnvName, SafeValue, Side, Strict

# flagscale: the command starts the engine in the background and returns (FlagScale's pid files
# say which process to follow); foreground: the command is the engine.
Mode = Literal["flagscale", "foreground"]
# One word of a command; it is never given to a shell unless the template asks for `sh -c`.
Word = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00\n]*$")]


class RenderedCommand(Strict):
    """What a launcher template renders."""

    mode: Mode
    command: list[Word] = Field(min_length=1)


class LaunchSpec(RenderedCommand):
    launcher: str
    sides: dict[Side, dict[EnvName, SafeValue]]
