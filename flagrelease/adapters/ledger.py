"""A local SQLite index of releases, for listing and looking them up quickly.

It is derived data: the release records in the artifact store are the source
of truth, and `rebuild` refills the ledger from them. Each record is kept whole
(as release.json holds it), so fields added to records later are shown without
a schema change; only the fields used to filter and look up get columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flagrelease.errors import ConfigError
from flagrelease.record import QUALIFIED, ReleaseRecord, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    run_id TEXT PRIMARY KEY,
    started TEXT NOT NULL,  -- UTC, fixed format: text order is time order
    model TEXT NOT NULL,
    chip TEXT NOT NULL,
    status TEXT NOT NULL,
    registry TEXT,
    repository TEXT,
    digest TEXT,
    image_repository TEXT,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS release_tags (
    run_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
);
CREATE INDEX IF NOT EXISTS releases_by_cell ON releases (model, chip, started);
CREATE INDEX IF NOT EXISTS release_tags_by_tag ON release_tags (tag);
"""

# An image reference names a release by any of the names it is known under.
_NAMED = "? IN (repository, registry || '/' || repository, image_repository)"


@dataclass(frozen=True)
class LedgerRow:
    run_id: str
    started: datetime
    cell: str
    model: str
    chip: str
    status: Status
    registry: str | None
    repository: str | None
    tags: tuple[str, ...]
    digest: str | None
    image_id: str | None
    pins: dict[str, str]


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path)) as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation, committed on success and rolled back on error."""
        with closing(sqlite3.connect(self.path)) as conn, conn:
            yield conn

    def record(self, record: ReleaseRecord) -> None:
        """Add a release, or replace the one with the same run_id."""
        with self._transaction() as conn:
            _put(conn, record)

    def rebuild(self, records: Iterable[ReleaseRecord]) -> None:
        """Empty the ledger and refill it from `records`; on a bad record it is left as it was."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM release_tags")
            conn.execute("DELETE FROM releases")
            for record in records:
                _put(conn, record)

    def records(
        self, model: str | None = None, chip: str | None = None, qualified: bool | None = None
    ) -> list[ReleaseRecord]:
        """Whole records, newest first; `qualified` keeps only released (True) or only other (False) runs."""
        clauses, args = [], []
        for column, value in (("model", model), ("chip", chip)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if qualified is not None:
            clauses.append("status = ?" if qualified else "status != ?")
            args.append(QUALIFIED)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction() as conn:
            found = conn.execute(f"SELECT record FROM releases {where} ORDER BY started DESC, run_id DESC", args)
            return [ReleaseRecord.parse(text, str(self.path)) for (text,) in found]

    def list(self, model: str | None = None, chip: str | None = None, qualified: bool | None = None) -> list[LedgerRow]:
        """Releases, newest first, as rows; `qualified` as in `records`."""
        return [_row(record) for record in self.records(model, chip, qualified)]

    def latest_qualified(self, model: str, chip: str) -> LedgerRow | None:
        rows = self.list(model=model, chip=chip, qualified=True)
        return rows[0] if rows else None

    def show(self, ref: str) -> ReleaseRecord:
        """The whole record of a run, by run_id, `repo:tag` or `repo@sha256:...`.

        `repo` may include the registry host. Several runs can share a digest (a
        reused image pushed again); the newest is shown.
        """
        query, args = _lookup(ref)
        with self._transaction() as conn:
            found = conn.execute(
                f"SELECT record FROM releases WHERE {query} ORDER BY started DESC LIMIT 1", args
            ).fetchone()
        if found is None:
            raise ConfigError(
                f"no release {ref!r} in the ledger",
                where=str(self.path),
                fix="give a run id, REPO:TAG or REPO@sha256:...; "
                "rebuild the ledger from the artifact store if it is out of date",
            )
        return ReleaseRecord.parse(found[0], str(self.path))


def _lookup(ref: str) -> tuple[str, list[str]]:
    """SQL condition and arguments selecting the releases `ref` names."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return f"digest = ? AND {_NAMED}", [digest, repo]
    repo, colon, tag = ref.rpartition(":")
    if colon:
        return f"run_id IN (SELECT run_id FROM release_tags WHERE tag = ?) AND {_NAMED}", [tag, repo]
    return "run_id = ?", [ref]


def _put(conn: sqlite3.Connection, record: ReleaseRecord) -> None:
    publish, image = record.publish, record.image
    conn.execute("DELETE FROM release_tags WHERE run_id = ?", (record.run_id,))
    conn.execute("DELETE FROM releases WHERE run_id = ?", (record.run_id,))
    conn.execute(
        "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.run_id,
            _utc(record.started).isoformat(timespec="microseconds"),
            record.model,
            record.chip,
            record.status,
            publish.registry if publish else None,
            publish.repository if publish else None,
            publish.digest if publish else None,
            image.repository if image else None,
            record.to_json(),
        ),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO release_tags VALUES (?, ?)",
        [(record.run_id, tag) for tag in (publish.tags if publish else [])],
    )


def _utc(started: datetime) -> datetime:
    """Records write UTC; any offset is converted, and no offset is taken as UTC."""
    return started.replace(tzinfo=started.tzinfo or UTC).astimezone(UTC)


def _row(record: ReleaseRecord) -> LedgerRow:
    publish, image = record.publish, record.image
    return LedgerRow(
        run_id=record.run_id,
        started=_utc(record.started),
        cell=record.cell,
        model=record.model,
        chip=record.chip,
        status=record.status,
        registry=publish.registry if publish else None,
        repository=publish.repository if publish else None,
        tags=tuple(publish.tags if publish else ()),
        digest=publish.digest if publish else None,
        image_id=image.image_id if image else None,
        pins=dict(record.pins),
    )
