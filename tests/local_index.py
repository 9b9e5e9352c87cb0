"""A real PEP 503 simple index for the tests: a directory of distribution files and one
`simple/<project>/index.html` page per project, served by `python -m http.server` on loopback.

    index = LocalIndex(tmp_path)
    index.publish("flag-gems", "flag_gems-5.1.0-py3-none-any.whl", requires_python=">=3.10")
    with index.serving() as url:   # http://127.0.0.1:PORT/simple/
        ...
"""

from __future__ import annotations

import html
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from packaging.utils import canonicalize_name

from tests.conftest import free_port


class LocalIndex:
    def __init__(self, root: Path):
        self.root = root
        self.files = root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._links: dict[str, list[str]] = {}

    def publish(self, project: str, filename: str, *, requires_python: str | None = None, yanked=False) -> None:
        """Plant a distribution file and list it on the project's page."""
        (self.files / filename).write_bytes(f"{filename}: planted by the FlagRelease tests\n".encode())
        attrs = f' data-requires-python="{html.escape(requires_python)}"' if requires_python else ""
        attrs += ' data-yanked=""' if yanked else ""
        self._links.setdefault(canonicalize_name(project), []).append(
            f'<a href="../../files/{filename}"{attrs}>{html.escape(filename)}</a><br/>'
        )
        self._write_pages()

    def _write_pages(self) -> None:
        for project, links in self._links.items():
            page = self.root / "simple" / project / "index.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            body = "\n".join(links)
            page.write_text(f"<!DOCTYPE html>\n<html><body><h1>Links for {project}</h1>\n{body}\n</body></html>\n")
        listing = "\n".join(f'<a href="{p}/">{p}</a><br/>' for p in sorted(self._links))
        (self.root / "simple" / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{listing}\n</body></html>\n")

    @contextmanager
    def serving(self) -> Iterator[str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/simple/"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url, timeout=1.0)
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the local package index did not start") from None
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)
