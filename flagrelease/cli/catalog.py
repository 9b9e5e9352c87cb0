"""`flagrelease catalog`: the static release catalog for registry consumers."""

from __future__ import annotations

from pathlib import Path

import typer

from flagrelease.cli.common import choice, fail, out, output_dir
from flagrelease.errors import FlagReleaseError
from flagrelease.settings import load_settings


def catalog(
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory to write the site into (created if missing)"),
    store: str = typer.Option(
        "local", "--store", help="`local`: the ledger and the local results; `s3`: the records in FLAGRELEASE_S3_URL"
    ),
    link_base: str = typer.Option(
        "", "--link-base", help="prefix of the release pages' links in catalog.md, e.g. the URL the site is served at"
    ),
) -> None:
    """Write a static web site of the latest qualified release per model x chip, and catalog.md.

    Opens offline (no script, no external asset). Examples:
      flagrelease catalog --out site/
      flagrelease catalog --out site/ --store s3 --link-base https://releases.example.com/
    """
    from flagrelease.steps.catalog import catalog_records, write_site

    try:
        choice(store, ("local", "s3"), "--store")
        output_dir(out_dir, "--out")
        records, source = catalog_records(load_settings(), "s3" if store == "s3" else "local")
        site = write_site(records, source, out_dir, link_base)
    except FlagReleaseError as err:
        fail(err, False)
    out.print(f"catalog of {len(site.pages)} release(s) from {site.source}: {site.index}")
    out.print(f"Markdown table for a README: {site.markdown}")
