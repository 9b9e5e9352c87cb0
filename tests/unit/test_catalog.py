"""The release catalog: which release each model x chip shows, its Markdown table and its pages."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

from flagrelease.adapters.artifact_store import LocalStore
from flagrelease.catalog import latest_qualified, markdown_table, safe_name, table_rows
from flagrelease.record import ReleaseRecord
from flagrelease.steps.card import CARD
from flagrelease.steps.catalog import card_to_html, write_site
from tests.conftest import ROOT

RECORD = ReleaseRecord.load(ROOT / "tests/data/card/tiny-llama--cpu/release.json")


def variant(run_id: str, hours: float = 0, **update) -> ReleaseRecord:
    return RECORD.model_copy(update={"run_id": run_id, "started": RECORD.started + timedelta(hours=hours)} | update)


def test_the_newest_qualified_release_of_each_cell_is_listed_by_model_then_chip():
    other_chip = variant("r-other", chip="aaa-chip", cell="tiny-llama--aaa-chip")
    records = [
        variant("r-old", hours=-2),
        variant("r-new", hours=1),
        variant("r-newer-gated", hours=2, status="gated"),
        variant("r-newest-unchanged", hours=3, status="unchanged"),
        other_chip,
    ]
    entries = latest_qualified(records)
    assert [(e.model, e.chip, e.record.run_id) for e in entries] == [
        ("tiny-llama", "aaa-chip", "r-other"),
        ("tiny-llama", "cpu", "r-new"),
    ]
    assert entries[1].pull == f"docker pull 127.0.0.1:5000/{RECORD.publish.repository}@{RECORD.publish.digest}"
    assert entries[1].page == "releases/tiny-llama--cpu/r-new/index.html"
    assert entries[1].date == "2026-01-14 17:30 UTC"
    assert table_rows(entries)[1]["digest"] == RECORD.publish.digest


def test_records_that_cannot_name_a_page_are_left_out():
    assert latest_qualified([variant("../../etc"), variant("r1", cell="a/b")]) == []
    assert safe_name("20260114T163002Z-0b7d21") and not safe_name("..") and not safe_name("a/b")


def test_the_markdown_table_escapes_pipes_and_prefixes_links():
    table = markdown_table(latest_qualified([variant("r1")]), link_base="https://example.com/catalog/")
    header, rule, row = table.splitlines()
    assert header.count("|") == rule.count("|") == row.count("|") == 9
    assert "(https://example.com/catalog/releases/tiny-llama--cpu/r1/index.html)" in row
    assert f"`{RECORD.publish.digest}`" in row
    odd = variant("r2", model="a|b")
    assert "a\\|b" in markdown_table(latest_qualified([odd]))


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(html: str) -> list[tuple[str, dict]]:
    parser = _Collect()
    parser.feed(html)
    return parser.tags


def test_the_site_escapes_every_value_and_renders_the_card_without_raw_html(tmp_path):
    hostile = "<script>alert(1)</script>"
    record = variant("r1", pins=RECORD.pins | {"flagscale": hostile})
    store_root = tmp_path / "store"
    run_dir = store_root / record.cell / record.run_id
    record.save(run_dir)
    (run_dir / CARD).write_text(f"# Card\n\n{hostile}\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[x](javascript:alert(1))\n")
    site = write_site([record], LocalStore(store_root), tmp_path / "site")
    [page] = site.pages
    html = page.read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    tags = _parse(html)
    assert ("table", {}) in tags  # the card's table, rendered
    assert not [a for t, a in tags if t == "a" and "javascript" in (a.get("href") or "")]
    assert not [t for t, _ in tags if t in ("script", "img")]  # no plot in the store: no image
    assert (page.parent / CARD).read_text().startswith("# Card")
    assert f"docker pull 127.0.0.1:5000/{RECORD.publish.repository}@{RECORD.publish.digest}" in html
    index = site.index.read_text()
    assert 'href="releases/tiny-llama--cpu/r1/index.html"' in index
    assert site.markdown.read_text().count("\n") == 3


def test_no_asset_of_the_site_is_external(tmp_path):
    """Images, styles and scripts would not load offline; a plain link elsewhere may stay."""
    record = variant("r1")
    run_dir = tmp_path / "store" / record.cell / record.run_id
    record.save(run_dir)
    (run_dir / CARD).write_text("[FlagScale](https://github.com/FlagOpen/FlagScale)\n\n![plot](perf.png)\n")
    site = write_site([record], LocalStore(tmp_path / "store"), tmp_path / "site")
    for path in [site.index, *site.pages]:
        for tag, attrs in _parse(path.read_text()):
            value = attrs.get("src") or (attrs.get("href") if tag == "link" else "") or ""
            assert not value.startswith(("http:", "https:", "//")), f"{path}: <{tag} {value}>"


def test_a_store_without_a_qualified_release_gives_an_empty_catalog(tmp_path):
    site = write_site([variant("r1", status="gated")], LocalStore(tmp_path), tmp_path / "site")
    assert site.pages == [] and 'id="empty"' in site.index.read_text()


def test_card_links_are_kept_relative():
    html = card_to_html("![plot](perf.png)\n\n[card](card.md)\n")
    assert '<img src="perf.png" alt="plot"' in html and '<a href="card.md">' in html
