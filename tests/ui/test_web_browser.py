"""End to end: uvicorn serves the app on a loopback port, headless Chromium (selenium) drives the web app at /ui:
a text search, image searches, the details panel and the statistics tab; screenshots are saved.

Needs Debian's chromium and chromium-driver (`apt-get install -y chromium chromium-driver`); skipped without.
Screenshots go to $MEDSEARCH_SCREENSHOTS when set (CI artifacts), else to the test's tmp folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ui.conftest import IMAGES_COLLECTION, make_settings
from ui.api import ApiSettings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser test needs Debian's chromium and chromedriver: apt-get install -y chromium chromium-driver",
)
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 25  # seconds for any one thing to appear


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(ui_home: Path, workspace_factory, vqa_model: Path) -> Iterator[str]:
    """The app (API + web) served by uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    api = ApiSettings(api_key=None, reads_require_key=False, max_upload_bytes=5_000_000, cors_origins=[])
    app = create_app(make_settings(ui_home), api, workspace_factory=workspace_factory)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not instance.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1400,1300",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MEDSEARCH_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------- page helpers
def wait(driver, condition, timeout: float = WAIT):
    return WebDriverWait(driver, timeout).until(condition)


def status_text(driver) -> str:
    """The status line's Markdown text (without Gradio's progress overlay)."""
    found = driver.find_elements(By.CSS_SELECTOR, '#search-status [data-testid="markdown"]')
    return found[0].text if found else ""


def idle(driver) -> bool:
    trackers = driver.find_elements(By.CSS_SELECTOR, '#search-status [data-testid="status-tracker"]')
    return all("hide" in (t.get_attribute("class") or "") for t in trackers)


def captions(driver) -> list[str]:
    return [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#results .caption-label") if c.text]


def run_search(driver, previous: str) -> str:
    """Click Search and wait until the status line changes from `previous`; returns the new status."""
    driver.find_element(By.CSS_SELECTOR, "#search-button").click()
    wait(driver, lambda d: idle(d) and status_text(d) and status_text(d) != previous)
    return status_text(driver)


def choose(driver, elem_id: str, value: str) -> None:
    """Pick `value` in a Gradio dropdown (open it, click the option)."""
    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input").click()
    option = (By.CSS_SELECTOR, f'#{elem_id} li[role="option"][aria-label="{value}"]')
    wait(driver, EC.element_to_be_clickable(option)).click()
    wait(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#{elem_id} input").get_attribute("value") == value
    )


def replace_text(box, text: str) -> None:
    box.send_keys(Keys.CONTROL, "a")  # a modifier stays down until the end of one send_keys call
    box.send_keys(Keys.DELETE)
    if text:
        box.send_keys(text)


def upload(driver, path: Path) -> None:
    field = driver.find_element(By.CSS_SELECTOR, "#query-image input[type=file]")
    field.send_keys(str(path))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#query-image img"))


def image_space(base: str, collection: str) -> bool:
    spaces = httpx.get(f"{base}/collections/{collection}", timeout=10).json()["spaces"]
    return bool({"clip", "ssl"} & set(spaces))


# ---------------------------------------------------------------------- the test
def test_search_in_the_browser(server: str, browser, shots: Path):
    browser.get(f"{server}/ui/")
    query = wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "#query-text textarea")))
    wait(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, "#collection input").get_attribute("value") == "default",
    )

    # text search: a gallery of hits (images; text cards for reports) with id + score captions, and details
    query.send_keys("brain hemorrhage")
    status = run_search(browser, "")
    assert "results" in status and "default" in status, status
    wait(browser, lambda d: len(captions(d)) >= 5)
    first = captions(browser)
    assert first[0].split(" ")[1].startswith("vqa-rad:synpic"), first
    assert all(c.split(" ")[1].split(":")[0] in ("vqa-rad", "iu-xray") for c in first), first
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results img")) == len(first)  # images and text cards
    details = browser.find_element(By.ID, "hit-details").text
    assert first[0].split(" ")[1] in details and "Why" in details and "dense:text" in details
    browser.find_elements(By.CSS_SELECTOR, "#results .thumbnail-item")[1].click()
    wait(browser, lambda d: first[1].split(" ")[1] in d.find_element(By.ID, "hit-details").text)
    browser.save_screenshot(str(shots / "text-search.png"))

    # reports show as text cards; their concepts as chips, negated ones marked
    replace_text(query, "no pleural effusion")
    status = run_search(browser, status)
    wait(browser, lambda d: any(" iu-xray:" in c for c in captions(d)))
    items = browser.find_elements(By.CSS_SELECTOR, "#results .thumbnail-item")
    reports = [
        (item, text.split(" ")[1]) for item, text in zip(items, captions(browser)) if " iu-xray:" in text
    ]
    reports[0][0].click()
    wait(browser, lambda d: reports[0][1] in d.find_element(By.ID, "hit-details").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#hit-details .chip")
    negated = browser.find_elements(By.CSS_SELECTOR, "#hit-details .chip.negated")
    assert negated and negated[0].text.startswith("no "), browser.find_element(By.ID, "hit-details").text
    browser.save_screenshot(str(shots / "report-search.png"))

    # image search on the default collection: results when it has an image space, else the engine's message
    pages = httpx.get(f"{server}/collections/{IMAGES_COLLECTION}/records", params={"limit": 1}, timeout=10)
    sample = Path(pages.json()["records"][0]["image_path"])  # in both collections
    replace_text(query, "")
    upload(browser, sample)
    status = run_search(browser, status)
    if image_space(server, "default"):
        assert "results" in status, status
        wait(browser, lambda d: captions(d))
    else:
        assert "no image space" in status, status
    browser.save_screenshot(str(shots / "image-search-default.png"))

    # image search on a collection with an image space: the uploaded image itself comes first
    assert image_space(server, IMAGES_COLLECTION)
    choose(browser, "collection", IMAGES_COLLECTION)
    status = run_search(browser, status)
    assert "results" in status and IMAGES_COLLECTION in status, status
    wait(browser, lambda d: captions(d))
    assert captions(browser)[0].split(" ")[1] == f"vqa-rad:{sample.stem}", captions(browser)
    browser.save_screenshot(str(shots / "image-search.png"))

    # collection statistics
    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Collection statistics')]").click()
    wait(browser, lambda d: "records" in d.find_element(By.ID, "collection-stats").text)
    stats = browser.find_element(By.ID, "collection-stats").text
    assert "default" in stats and "minilm" in stats, stats
    browser.save_screenshot(str(shots / "collection-stats.png"))

    # knowledge graph: a lay wording finds the concept card and its neighbourhood plot; linking marks negation
    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Knowledge graph')]").click()
    concept = wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "#kg-query textarea")))
    concept.send_keys("enlarged heart")
    browser.find_element(By.CSS_SELECTOR, "#kg-button").click()
    wait(browser, lambda d: "cardiomegaly" in d.find_element(By.ID, "kg-card").text)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#kg-plot img, #kg-plot svg, #kg-plot canvas"))
    report = browser.find_element(By.CSS_SELECTOR, "#kg-text textarea")
    report.send_keys("No pneumothorax. Possible small effusion.")
    concept.click()  # leaving the box links the text
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#kg-linked mark.negated"))
    assert browser.find_element(By.CSS_SELECTOR, "#kg-linked mark.negated").text == "pneumothorax"
    assert browser.find_elements(By.CSS_SELECTOR, "#kg-linked mark.uncertain")
    browser.save_screenshot(str(shots / "knowledge-graph.png"))
    assert all((shots / name).stat().st_size > 10_000 for name in ("text-search.png", "image-search.png"))


def test_ask_in_the_browser(server: str, browser, shots: Path, shared_data: Path):
    """The Ask tab: an image and a question give an answer with its confidence and the cited cases' thumbnails."""
    browser.get(f"{server}/ui/")
    wait(browser, EC.element_to_be_clickable((By.XPATH, "//button[@role='tab'][contains(., 'Ask')]"))).click()
    question = wait(
        browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "#ask-question textarea, #ask-question input"))
    )
    sample = sorted((shared_data / "vqa-rad" / "images").glob("*.jpg"))[0]
    browser.find_element(By.CSS_SELECTOR, "#ask-image input[type=file]").send_keys(str(sample))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#ask-image img"))
    question.send_keys("Is there a pneumothorax?")
    browser.find_element(By.CSS_SELECTOR, "#ask-button").click()
    wait(browser, lambda d: "confidence" in d.find_element(By.ID, "ask-answer").text)
    answer = browser.find_element(By.ID, "ask-answer").text
    assert answer.split()[0] in {"yes", "no"} and "closed question" in answer, answer
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#ask-cases img"))
    labels = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#ask-cases .caption-label") if c.text]
    assert labels and labels[0].startswith("[1] vqa-rad:"), labels
    browser.save_screenshot(str(shots / "ask.png"))


def test_report_in_the_browser(server: str, browser, shots: Path):
    """The Report tab: an indication alone drafts FINDINGS and IMPRESSION cited to retrieved reports."""
    browser.get(f"{server}/ui/")
    wait(
        browser, EC.element_to_be_clickable((By.XPATH, "//button[@role='tab'][contains(., 'Report')]"))
    ).click()
    box = wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "#report-indication textarea")))
    box.send_keys("Shortness of breath. Evaluate for cardiomegaly and pleural effusion.")
    browser.find_element(By.CSS_SELECTOR, "#report-button").click()
    wait(browser, lambda d: "IMPRESSION" in d.find_element(By.ID, "report-draft").text)
    draft = browser.find_element(By.ID, "report-draft").text
    assert "FINDINGS:" in draft and "[1]" in draft and "iu-xray:" in draft, draft
    browser.save_screenshot(str(shots / "report.png"))
