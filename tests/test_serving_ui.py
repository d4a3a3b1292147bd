"""The shop-floor pages, driven in headless Chromium (Debian `chromium` and `chromium-driver`)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from predmaint import schema
from predmaint.ingest.broker import free_port
from predmaint.predlog import PredictionLog
from serving.app import create_app

pytestmark = pytest.mark.integration


@pytest.fixture
def site(served_bundle, tmp_path):
    """The app on a real socket on 127.0.0.1, with a prediction log."""
    app = create_app(
        {"BUNDLE": served_bundle, "MODEL_VERSION": "3", "PREDICTION_LOG": PredictionLog(tmp_path / "log")}
    )
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def click_and_wait(browser, element_id: str) -> None:
    """Click a link or button and wait until the next page has replaced this one."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, element_id).click()

    def replaced(driver) -> bool:
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:  # Chromium may name the gone page's node this way instead
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(browser, 20).until(replaced)


def test_a_person_checks_a_reading_and_sees_modes_and_reasons(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    _, base = site
    browser.get(f"{base}/")
    assert "model version 3" in browser.find_element(By.TAG_NAME, "header").text
    click_and_wait(browser, "predict")
    assert "No failure expected" in browser.find_element(By.ID, "verdict").text

    click_and_wait(browser, "example-overstrain")  # pick an example, then submit it
    assert browser.find_element(By.ID, "tool_wear_min").get_attribute("value") == "215"
    click_and_wait(browser, "predict")
    assert "Failure likely" in browser.find_element(By.ID, "verdict").text
    first_mode = browser.find_element(By.CSS_SELECTOR, "#modes tr td").text
    assert first_mode == "overstrain failure"
    reasons = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#reasons li")]
    assert len(reasons) == 3 and any("strain" in reason or "torque" in reason for reason in reasons)
    browser.save_screenshot(str(tmp_path / "predict.png"))

    field = browser.find_element(By.ID, "torque_nm")  # a person mistypes a value
    field.clear()
    field.send_keys("-5")
    click_and_wait(browser, "predict")
    assert "torque_nm" in browser.find_element(By.ID, "error").text
    assert "invalid" in browser.find_element(By.ID, "torque_nm").get_attribute("class")
    assert browser.find_element(By.ID, "torque_nm").get_attribute("value") == "-5"  # nothing typed is lost


def test_fleet_view_shows_the_latest_risk_per_machine(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    app, base = site
    browser.get(f"{base}/fleet")
    assert "No predictions logged yet" in browser.find_element(By.ID, "empty").text
    client = app.test_client()
    old_risk = schema.EXAMPLE_READING | {
        "machine_id": "M2",
        "seq": 1,
        "tool_wear_min": 215,
        "torque_nm": 58.0,
    }
    readings = [
        schema.EXAMPLE_READING | {"machine_id": "M1", "seq": 1},
        old_risk,
        schema.EXAMPLE_READING | {"machine_id": "M2", "seq": 2, "timestamp": "2026-01-01T00:01:00Z"},
        schema.EXAMPLE_READING | {"machine_id": "M3", "seq": 1, "tool_wear_min": 220, "torque_nm": 60.0},
    ]
    assert client.post("/predict", json=readings).status_code == 200
    browser.get(f"{base}/fleet")
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")
    machines = [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows]
    assert machines[0] == "M3" and sorted(machines) == ["M1", "M2", "M3"]  # riskiest first, one row each
    m2 = rows[machines.index("M2")].text
    assert "2026-01-01 00:01:00" in m2 and "ok" in m2  # M2's newest reading, not its earlier risky one
    assert "failure likely" in rows[0].text
    browser.save_screenshot(str(Path(tmp_path) / "fleet.png"))
