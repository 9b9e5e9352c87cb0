"""Catalog step: a static web site of the latest qualified release per model x chip.

`DIR/index.html` holds the model x chip table and one row per release (image, tag, digest,
date, gate verdict, page); `DIR/releases/<cell>/<run>/index.html` one release: the exact
`docker pull NAME@sha256:...` line, its card rendered to HTML, the perf plot, the gate
table, the pins and the SBOM / provenance documents when the record names them;
`DIR/catalog.md` the same table in Markdown for a README. The records come from the
ledger (local results) or from the S3 store. No script, no external asset: CSS is
inline, links are relative, images are copied beside the pages, so the site opens
offline from the file system as well as from any static web server. Every value is
HTML-escaped (Jinja2 autoescape); the card's Markdown is rendered with raw HTML off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

from flagrelease.adapters.artifact_store import ArtifactStore, LocalStore, S3Store, store_from_settings
from flagrelease.adapters.ledger import Ledger
from flagrelease.catalog import Entry, axes, latest_qualified, markdown_table, safe_name
from flagrelease.errors import ConfigError, ServiceError, ServiceUnavailable
from flagrelease.record import ReleaseRecord
from flagrelease.settings import Settings
from flagrelease.steps.card import CARD, TEMPLATES

Source = Literal["local", "s3"]
INDEX = "index.html"
MARKDOWN = "catalog.md"
# Files of a run a release page links, by the record's role for them (`files`): the perf
# plot, and the supply-chain documents once records name them.
LINKED_ROLES = ("plot", "sbom", "provenance")


@dataclass(frozen=True)
class ReleasePage:
    entry: Entry
    card_html: Markup | None
    files: dict[str, str]  # role -> file name beside the page


@dataclass(frozen=True)
class CatalogSite:
    index: Path
    markdown: Path
    pages: list[Path]
    source: str


def catalog_records(settings: Settings, source: Source) -> tuple[list[ReleaseRecord], ArtifactStore]:
    """The qualified records to catalogue and the store holding their files: the ledger with
    the local results, or every record in the S3 store."""
    if source == "s3":
        if not settings.s3_url:
            raise ConfigError(
                "--store s3 needs FLAGRELEASE_S3_URL", where="FLAGRELEASE_S3_URL", fix="e.g. s3://bucket/prefix"
            )
        store = store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir)[-1]
        assert isinstance(store, S3Store)
        return store.list_records(), store
    return Ledger(settings.ledger_path).records(qualified=True), LocalStore(settings.results_dir)


def _fetch(store: ArtifactStore, record: ReleaseRecord, name: str) -> bytes | None:
    """A file of the run, or None when the store does not hold it (an unreachable store is an error)."""
    if not safe_name(name):
        return None
    try:
        return store.get(f"{record.cell}/{record.run_id}/{name}")
    except ServiceUnavailable:
        raise
    except ServiceError:
        return None


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES / "catalog"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def card_to_html(markdown: str) -> Markup:
    """A card's Markdown as HTML: CommonMark and tables; raw HTML in the card is shown as text,
    and markdown-it refuses javascript:/data: links."""
    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown))


def _page(entry: Entry, store: ArtifactStore, page_dir: Path) -> ReleasePage:
    record = entry.record
    page_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for role in LINKED_ROLES:
        name = record.files.get(role)
        if name and (data := _fetch(store, record, name)) is not None:
            (page_dir / name).write_bytes(data)
            files[role] = name
    card = _fetch(store, record, CARD)
    if card is not None:
        (page_dir / CARD).write_bytes(card)
        files["card"] = CARD
    return ReleasePage(entry, card_to_html(card.decode("utf-8", "replace")) if card is not None else None, files)


def write_site(records: list[ReleaseRecord], store: ArtifactStore, out: Path, link_base: str = "") -> CatalogSite:
    """Write the catalog of `records` into `out` (created if needed; files of an earlier catalog
    are overwritten, others left alone)."""
    entries = latest_qualified(records)
    env = _environment()
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for entry in entries:
        page_dir = out / entry.page.rsplit("/", 1)[0]
        page = _page(entry, store, page_dir)
        html = env.get_template("release.html.j2").render(page=page, record=entry.record, source=store.location)
        (page_dir / INDEX).write_text(html, encoding="utf-8")
        pages.append(page_dir / INDEX)
    models, chips = axes(entries)
    by_cell = {(e.model, e.chip): e for e in entries}
    index = out / INDEX
    index.write_text(
        env.get_template("index.html.j2").render(
            entries=entries, models=models, chips=chips, by_cell=by_cell, source=store.location, markdown=MARKDOWN
        ),
        encoding="utf-8",
    )
    markdown = out / MARKDOWN
    markdown.write_text(markdown_table(entries, link_base), encoding="utf-8")
    return CatalogSite(index=index, markdown=markdown, pages=pages, source=store.location)
