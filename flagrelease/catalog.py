"""The release catalog: what a registry consumer should pull for each model on each chip.

From release records (the ledger's, or the artifact store's), the newest qualified
release of every model x chip: its gate passed and it was pushed and verified under its
release tag. Pure data: `steps/catalog.py` writes the site, the flows the Prefect artifact.

    entries = latest_qualified(records)
    markdown_table(entries)   # for a README
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from flagrelease.record import QUALIFIED, ReleaseRecord

# Names that become file and directory names of the site: cell slugs, run ids, file names.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def safe_name(name: str) -> bool:
    """Whether `name` can be a path component of the site as it is (no separators, no `..`)."""
    return bool(_SAFE_NAME.fullmatch(name)) and ".." not in name


@dataclass(frozen=True)
class Entry:
    record: ReleaseRecord

    @property
    def model(self) -> str:
        return self.record.model

    @property
    def chip(self) -> str:
        return self.record.chip

    @property
    def image(self) -> str:
        """registry/repository, what `docker pull` takes before the digest."""
        publish = self.record.publish
        assert publish is not None
        return f"{publish.registry}/{publish.repository}"

    @property
    def name(self) -> str:
        """The image's own name: the repository's last part."""
        return self.image.rsplit("/", 1)[-1]

    @property
    def tag(self) -> str:
        assert self.record.publish is not None
        return self.record.publish.tags[0]

    @property
    def digest(self) -> str:
        assert self.record.publish is not None
        return self.record.publish.digest

    @property
    def date(self) -> str:
        started = self.record.started
        return started.replace(tzinfo=started.tzinfo or UTC).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def verdict(self) -> str:
        return self.record.gate.verdict if self.record.gate else "-"

    @property
    def page(self) -> str:
        """The release's page, relative to the catalog's index."""
        return f"releases/{self.record.cell}/{self.record.run_id}/index.html"

    @property
    def pull(self) -> str:
        return f"docker pull {self.image}@{self.digest}"


def qualified(record: ReleaseRecord) -> bool:
    return record.status == QUALIFIED and record.publish is not None and bool(record.publish.tags)


def latest_qualified(records: Iterable[ReleaseRecord]) -> list[Entry]:
    """The newest qualified release per model x chip, ordered by model, then chip. Records
    whose cell or run id could not name a page of the site are left out."""
    latest: dict[tuple[str, str], ReleaseRecord] = {}
    for record in records:
        if not (qualified(record) and safe_name(record.cell) and safe_name(record.run_id)):
            continue
        key = (record.model, record.chip)
        best = latest.get(key)
        if best is None or (_utc(record), record.run_id) > (_utc(best), best.run_id):
            latest[key] = record
    return [Entry(latest[key]) for key in sorted(latest)]


def _utc(record: ReleaseRecord):
    return record.started.replace(tzinfo=record.started.tzinfo or UTC).astimezone(UTC)


def axes(entries: list[Entry]) -> tuple[list[str], list[str]]:
    """The models (rows) and chips (columns) of the model x chip table."""
    return sorted({e.model for e in entries}), sorted({e.chip for e in entries})


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, no line breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(entries: list[Entry], link_base: str = "") -> str:
    """The catalog as a Markdown table; links are `link_base` + each release's page."""
    lines = [
        "| model | chip | image | tag | digest | date | gate | details |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        link = f"[page]({link_base}{e.page})"
        values = [e.model, e.chip, f"`{e.name}`", f"`{e.tag}`", f"`{e.digest}`", e.date, e.verdict]
        lines.append("| " + " | ".join(_cell(v) for v in values) + f" | {link} |")
    return "\n".join(lines) + "\n"


def table_rows(entries: list[Entry]) -> list[dict[str, str]]:
    """The catalog as rows of plain strings (a Prefect table artifact)."""
    return [
        {
            "model": e.model,
            "chip": e.chip,
            "image": e.image,
            "tag": e.tag,
            "digest": e.digest,
            "date": e.date,
            "gate": e.verdict,
            "run": e.record.run_id,
        }
        for e in entries
    ]
