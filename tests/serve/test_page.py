"""The HTML page in a real headless Chromium (Debian chromium + chromium-driver, Selenium):
pick a user, score, add an item, and see it among the candidates."""

import shutil

import pytest

from tests.serve.conftest import TOKEN, Server

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path = shutil.which("chromedriver")
    chromium = shutil.which("chromium")
    if not (driver_path and chromium):
        pytest.skip("needs Debian chromium and chromium-driver (scripts/setup-browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_page_scores_a_history_and_adds_an_item(run_copy, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server = Server(run_copy)
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(server.url + "/")
        wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "API token"))
        browser.find_element(By.ID, "token").send_keys(TOKEN, "\t")  # tab out: "change"
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#user option")) > 1)
        Select(browser.find_element(By.ID, "user")).select_by_index(1)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) > 0)
        browser.find_element(By.ID, "score").click()
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results tr.result"))
        assert len(rows) == 20
        probabilities = [float(r.find_elements(By.TAG_NAME, "td")[3].text) for r in rows]
        assert probabilities == sorted(probabilities, reverse=True)

        browser.find_element(By.ID, "new-id").clear()
        browser.find_element(By.ID, "new-id").send_keys("page-item")
        browser.find_element(By.ID, "field-title").send_keys("a brand new comedy film")
        browser.find_element(By.ID, "add").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "add-result"), "added page-item"))

        browser.find_element(By.ID, "pool").clear()
        browser.find_element(By.ID, "pool").send_keys("1")  # only the newest item
        browser.find_element(By.ID, "score").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "results"), "a brand new comedy film"))
        assert browser.find_element(By.ID, "error").text == ""

        browser.find_element(By.ID, "token").clear()
        browser.find_element(By.ID, "token").send_keys("wrong")
        browser.find_element(By.ID, "add").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "401"))
    finally:
        server.stop()


def test_page_shows_item_pictures_and_uploads_one(image_run, tmp_path, browser):
    """An image catalogue (P4 product photos): every ranked item shows its picture, a photo
    uploaded through the page is stored and shown; a screenshot is kept in the test's tmp folder
    (not committed)."""
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.serve.test_images import png

    run = shutil.copytree(image_run, tmp_path / "run")
    photo = tmp_path / "upload.png"
    photo.write_bytes(png(7, size=40))
    server = Server(run)
    wait = WebDriverWait(browser, 60)
    loaded = ("return Array.from(document.querySelectorAll(arguments[0]))"
              ".map((img) => img.complete && img.naturalWidth > 0 && img.offsetWidth > 0)")
    try:
        browser.set_window_size(1200, 1600)
        browser.get(server.url + "/")
        browser.find_element(By.ID, "token").send_keys(TOKEN, "\t")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#user option")) > 1)
        Select(browser.find_element(By.ID, "user")).select_by_index(1)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) > 0)
        browser.find_element(By.ID, "score").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results tr.result")) == 20)
        wait.until(lambda d: (lambda s: len(s) == 20 and all(s))(
            d.execute_script(loaded, "#results img.thumb")))  # 20 pictures, decoded, visible
        assert all(browser.execute_script(loaded, "#history img.thumb"))

        browser.find_element(By.ID, "new-id").clear()
        browser.find_element(By.ID, "new-id").send_keys("page-photo")
        browser.find_element(By.ID, "field-title").send_keys("a new striped shirt")
        browser.find_element(By.ID, "feature-class").send_keys("Shirt")
        browser.find_element(By.ID, "new-image").send_keys(str(photo))
        wait.until(lambda d: d.execute_script(loaded, "#new-preview") == [True])
        browser.find_element(By.ID, "add").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "add-result"), "added page-photo"))
        item = server.client.get("/v1/items/page-photo").json()
        assert item["has_image"] and item["fields"]["class"] == "Shirt"
        assert server.client.get("/v1/items/page-photo/image").content == photo.read_bytes()

        browser.find_element(By.ID, "pool").clear()
        browser.find_element(By.ID, "pool").send_keys("1")  # only the newest item
        browser.find_element(By.ID, "score").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "results"), "a new striped shirt"))
        wait.until(lambda d: d.execute_script(loaded, "#results img.thumb") == [True])
        src = browser.find_element(By.CSS_SELECTOR, "#results img.thumb").get_attribute("src")
        assert src.endswith("/v1/items/page-photo/image")
        assert browser.find_element(By.ID, "error").text == ""
        shot = tmp_path / "page-with-pictures.png"
        assert browser.save_screenshot(str(shot))
        assert base64.b64decode(browser.get_screenshot_as_base64())[:4] == b"\x89PNG"
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        server.stop()
