"""A Python package index's Simple API (PEP 503 HTML, PEP 691 JSON): what it lists for a project.

The only code that talks to a package index. httpx fetches (the host's CA bundle: PyPI may
sit behind a TLS-intercepting proxy), pypi-simple parses either format; what comes back is
flagrelease.index_pins.ProjectFiles, which the pure code decides on.

    with PackageIndex("https://pypi.org/simple/", ca_bundle=None) as index:
        files = index.project("flag-gems")   # ProjectFiles, or None when the index has no such project
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import httpx
from packaging.utils import canonicalize_name
from pypi_simple import ACCEPT_ANY, ProjectPage, UnsupportedRepoVersionError

from flagrelease.errors import ServiceError, ServiceUnavailable
from flagrelease.index_pins import IndexFile, ProjectFiles

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
DEFAULT_INDEX = "https://pypi.org/simple/"


def shown(url: str) -> str:
    """The index URL without credentials (a private index's URL may carry a token)."""
    return re.sub(r"//[^/@]*@", "//", url)


class PackageIndex:
    def __init__(self, url: str, *, ca_bundle: Path | None, timeout_s: float = 30.0):
        self.url = url.rstrip("/") + "/"
        self.label = shown(self.url)
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._http = httpx.Client(
            timeout=timeout_s, verify=verify, follow_redirects=True, headers={"Accept": ACCEPT_ANY}
        )

    def __enter__(self) -> PackageIndex:
        return self

    def __exit__(self, *exc) -> None:
        self._http.close()

    def project(self, name: str) -> ProjectFiles | None:
        """Every file the index lists for `name`; None when it has no such project (404)."""
        url = f"{self.url}{canonicalize_name(name)}/"
        try:
            response = self._http.get(url)
        except httpx.HTTPError as err:
            raise ServiceUnavailable(
                f"the package index {self.label} cannot be reached: {type(err).__name__}: {shown(str(err))}",
                where=f"package index {self.label}",
                fix="check the network (and FLAGRELEASE_CA_BUNDLE behind a TLS proxy), or point "
                "FLAGRELEASE_PIP_INDEX_URL (preflight) or --index (watch) at a mirror",
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ServiceError(
                f"the package index {self.label} answered {response.status_code} for {name}",
                where=f"package index {self.label}",
                fix="check the index URL and its credentials",
            )
        try:
            page = _parse(name, response)
        except (ValueError, UnsupportedRepoVersionError) as err:
            raise ServiceError(
                f"the package index {self.label} sent a page for {name} that is not a simple index page: {err}",
                where=url.replace(self.url, self.label),
                fix="point the index URL at a PEP 503 / PEP 691 simple index (it ends in /simple/)",
            ) from None
        return ProjectFiles(
            project=name,
            files=[
                IndexFile(
                    filename=p.filename,
                    version=p.version,
                    kind=p.package_type if p.package_type in ("wheel", "sdist") else "other",
                    requires_python=p.requires_python,
                    yanked=p.is_yanked,
                )
                for p in page.packages
            ],
        )


def _parse(name: str, response: httpx.Response) -> ProjectPage:
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    if content_type == JSON_TYPE:
        return ProjectPage.from_json_data(response.json(), base_url=str(response.url))
    if content_type in ("text/html", "application/vnd.pypi.simple.v1+html", ""):
        return ProjectPage.from_html(name, response.text, base_url=str(response.url))
    raise ValueError(f"content type {content_type!r}")
