"""The web page in headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): it lists the model, and dropping a digit image shows the predicted class, which
must equal the argmax of the same upload through the REST API.

Run from the repository root after `cargo build`:

    apt-get install chromium chromium-driver
    pip install -r tests/python/requirements.txt
    python3 -m pytest tests/python
"""

import json
import struct
import tempfile
import urllib.request
import zlib

import pytest
from conftest import ROOT, serve
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait



def digit_png():
    """A 28x28 gray PNG of a bright vertical bar, written with zlib (no imaging library)."""
    rows = b"".join(b"\x00" + bytes(255 if 12 <= x < 16 and 4 <= y < 24 else 0 for x in range(28)) for y in range(28))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server():
    args = [
        "--model_name=mnist_image",
        f"--model_base_path={ROOT / 'models' / 'mnist_image'}",
        "--rest_api_address=127.0.0.1:0",
        "--port=0",
    ]
    with serve(args, "Exporting HTTP/REST API at:") as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="onnx-serving-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def test_the_page_predicts_a_dropped_digit(server, browser):
    png = digit_png()
    request = urllib.request.Request(
        f"http://{server}/v1/models/mnist_image:predict", data=png, headers={"Content-Type": "image/png"}
    )
    scores = json.loads(urllib.request.urlopen(request).read())["predictions"][0]
    expected = max(range(len(scores)), key=lambda i: scores[i])

    browser.get(f"http://{server}/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "mnist_image" in d.find_element(By.ID, "models").text)
    assert "AVAILABLE" in browser.find_element(By.ID, "models").text
    wait.until(lambda d: "serving_default" in d.find_element(By.ID, "signature").text)
    assert '"instances"' in browser.find_element(By.ID, "request").get_attribute("value")

    with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as file:
        file.write(png)
    browser.find_element(By.ID, "file").send_keys(file.name)
    wait.until(lambda d: d.find_element(By.ID, "top").text.startswith("class "))
    first = browser.find_element(By.ID, "top").text.splitlines()[0]
    assert first.startswith(f"class {expected}:"), first

    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: "predictions" in d.find_element(By.ID, "response").text)
