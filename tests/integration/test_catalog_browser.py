"""`flagrelease catalog` after a real release, opened in a real headless Chromium (Debian's
chromium + chromium-driver, driven by Selenium): no console error, the released cpu cell
listed with its digest, every relative link resolving, screenshots kept in the test's
directory. From the local ledger and from the S3 records alike."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.conftest import run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed: run scripts/bootstrap")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _errors(driver) -> list[dict]:
    """Console errors since the last call (the log is drained by reading it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _open(driver, path: Path) -> None:
    driver.get(path.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert _errors(driver) == [], f"console errors on {path}"
    # Every image loaded (a missing or external one would have no natural width offline).
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert broken == [], f"images that did not load on {path}: {broken}"


def _relative_links(driver) -> list[Path]:
    """The files the page's relative links point at (file:// URLs, as the browser resolved them)."""
    hrefs = [a.get_attribute("href") for a in driver.find_elements(By.TAG_NAME, "a")]
    return [Path(unquote(urlsplit(h).path)) for h in hrefs if h and h.startswith("file:")]


def _check_site(driver, site: Path, released: dict, shots: Path) -> None:
    index = site / "index.html"
    _open(driver, index)
    rows = driver.find_elements(By.CSS_SELECTOR, "#releases tbody tr[data-cell='tiny-llama--cpu']")
    assert len(rows) == 1
    assert released["digest"] in rows[0].text
    assert released["tags"][0] in rows[0].text
    driver.save_screenshot(str(shots / "catalog-index.png"))
    links = _relative_links(driver)
    assert site / "catalog.md" in links
    for target in links:
        assert target.is_file(), f"{index} links {target}, which does not exist"
    [page] = {t for t in links if t.name == "index.html" and "releases" in t.parts}
    _open(driver, page)
    pull = driver.find_element(By.ID, "pull").text
    assert pull == f"docker pull {released['repository']}@{released['digest']}"
    gate = driver.find_element(By.ID, "gate").text
    assert "arith-mc" in gate and released["gate"]["verdict"] in driver.find_element(By.ID, "facts").text
    assert driver.find_element(By.ID, "card").find_elements(By.TAG_NAME, "h1")  # the card, rendered
    assert driver.find_elements(By.CSS_SELECTOR, "p.plot img")  # loaded, checked by _open
    driver.save_screenshot(str(shots / "catalog-release.png"))
    for target in _relative_links(driver):
        assert target.is_file(), f"{page} links {target}, which does not exist"
    for shot in ("catalog-index.png", "catalog-release.png"):
        assert (shots / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_catalog_from_the_ledger_opens_in_chromium(released, fr_home, browser, tmp_path):
    site = tmp_path / "site"
    proc = run_cli("catalog", "--out", str(site), home=fr_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert released["digest"] in (site / "catalog.md").read_text()
    _check_site(browser, site, released, tmp_path)


def test_catalog_from_s3_records_opens_in_chromium(released, fr_home, s3, browser, tmp_path):
    site = tmp_path / "site"
    proc = run_cli("catalog", "--out", str(site), "--store", "s3", home=fr_home, extra_env=s3["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "s3://" in proc.stdout
    _check_site(browser, site, released, tmp_path)


def test_catalog_from_s3_without_a_bucket_is_a_config_error(fr_home, tmp_path):
    proc = run_cli("catalog", "--out", str(tmp_path / "site"), "--store", "s3", home=fr_home)
    assert proc.returncode == 2
    assert "--store s3 needs FLAGRELEASE_S3_URL" in proc.stderr and "Traceback" not in proc.stderr
