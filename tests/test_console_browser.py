"""The console in a real browser: headless Debian chromium driven by playwright against the
demo pair (real `twistd sepgw` and `twistd sepgw-pev` on the simulated link, consoles
enabled on loopback). Skipped, saying why, when chromium or playwright is missing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import shared_pki
from tests.processes import REPO, Process, free_port
from tests.test_e2e_twistd import write_configs

CHROMIUM = os.environ.get("SEPGW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "browser-test-token-0123456789"
#: Screenshots go to the test's working directory; SEPGW_SCREENSHOTS=docs refreshes the ones
#: docs/console.md shows (a normal run never rewrites tracked files).
#: Where the screenshots go: $SEPGW_SCREENSHOTS (e.g. docs/ to refresh the docs' images), else
#: the test's working directory (trial's _trial_temp), not the checkout.
SCREENSHOTS = Path(os.environ.get("SEPGW_SCREENSHOTS") or ".")


def _browser() -> tuple[Any, Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SkipTest("playwright is not installed (pip install -e '.[test]')") from None
    if not Path(CHROMIUM).exists():
        raise SkipTest(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    manager = sync_playwright()
    pw = manager.start()
    profile = tempfile.mkdtemp(prefix="sepgw-chromium-")
    try:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1200, "height": 1100})
    except Exception as e:
        manager.__exit__(None, None, None)
        raise SkipTest(f"chromium did not start under playwright: {e}") from None
    return manager, context


class ConsoleBrowserTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.manager, self.context = _browser()
        self.addCleanup(self.manager.__exit__, None, None, None)
        self.addCleanup(self.context.close)
        directory = Path(self.mktemp()).absolute()
        evse_cfg, pev_cfg = write_configs(directory, free_port(), shared_pki())
        evse_cfg.write_text(evse_cfg.read_text() + f'\n[console]\nenabled = true\nport = 0\n'
                                                    f'token = "{TOKEN}"\n')
        pev_cfg.write_text(pev_cfg.read_text() + '\n[console]\nenabled = true\nport = 0\n')
        self.evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(self.evse.kill)
        self.evse_url = self.evse.wait_for(r"sepgw console at (http://\S+/)").group(1)
        self.evse.wait_for(r"sepgw EVSE serving")
        self.pev = Process.twistd("sepgw-pev", pev_cfg)
        self.addCleanup(self.pev.kill)
        self.pev_url = self.pev.wait_for(r"sepgw console at (http://\S+/)").group(1)

    def test_evse_console_authorizes_and_plots_a_confirmed_fixed_w(self) -> None:
        """The EVSE console, opened with its token, shows the port reach `authorized`, the
        PEV's identity and the timeline with requirement IDs; a fixed-w of 50 % confirmed
        in the page's dialog is executed (V2G-4.8.2-1) and the meter plot moves to the
        PEV's discharge; screenshots of both views are saved. A request without the token
        is refused (401)."""
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(self.evse_url + "api/state", timeout=5)
        self.assertEqual(refused.exception.code, 401)

        page = self.context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(self.evse_url + "#token=" + TOKEN)
        self.assertNotIn("token", page.url)  # the fragment is dropped once read
        port = page.locator("#port-port1")
        port.and_(page.locator("[data-authorized=true]")).wait_for(timeout=30_000)
        self.assertEqual(port.get_attribute("data-state"), "authorized")
        timeline = port.locator(".timeline").inner_text()
        self.assertIn("V2G-4.6.4-2", timeline)
        self.assertIn("mutual TLS: PEV LFDI", timeline)
        self.assertIn("HardwareModuleName", timeline)

        canvas = port.locator("canvas.meter")
        page.wait_for_function("() => Number(document.querySelector('canvas.meter')"
                               ".dataset.samples) > 5", timeout=10_000)
        self.assertEqual(float(canvas.get_attribute("data-last-w") or "nan"), 0.0)

        # The page redraws on every state change; one between selecting the field's text
        # and typing over it must not turn "42" into "5042" (seen as "5050" in CI).
        page.evaluate("() => { const i = document.querySelector('#port-port1 input.percent');"
                      " i.focus(); i.select(); render(); }")
        page.keyboard.insert_text("42")
        self.assertEqual(port.locator("input.percent").input_value(), "42")
        port.locator("input.percent").fill("150")
        port.locator("button.fixed-w").click()
        self.assertIn("not a whole percent from -100 to 100",
                      page.locator("#toast").inner_text())
        self.assertFalse(page.locator("dialog#confirm").is_visible())
        port.locator("input.percent").fill("50")
        port.locator("button.fixed-w").click()
        dialog = page.locator("dialog#confirm")
        dialog.wait_for(state="visible")
        self.assertIn("opModFixedW 50 %", dialog.inner_text())
        dialog.locator("#confirm-ok").click()
        # The simulated PEV discharges 50 % of 6500 W; the EVSE meter measures it.
        page.wait_for_function("() => Number(document.querySelector('canvas.meter')"
                               ".dataset.lastW) > 3000", timeout=20_000)
        self.evse.wait_for(r"console: .*fixed-w.* asked by token:[0-9a-f]{8} from 127\.0\.0\.1")
        page.wait_for_timeout(1500)  # let the plot draw a few samples of the new level
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "console.png"), full_page=False)

        pev_page = self.context.new_page()
        pev_page.on("pageerror", lambda e: errors.append(str(e)))
        pev_page.goto(self.pev_url)
        pev_page.locator("#pev[data-energize=true]").wait_for(timeout=20_000)
        report = pev_page.locator("table.report").inner_text()
        self.assertIn("authorized to discharge (opModEnergize true)", report)
        self.assertIn("V2G-4.6.4-2", report)
        pev_page.wait_for_function("() => Number(document.querySelector('canvas.inverter')"
                                   ".dataset.lastW) > 3000", timeout=10_000)
        pev_page.wait_for_timeout(1500)
        pev_page.screenshot(path=str(SCREENSHOTS / "console-pev.png"), full_page=False)
        self.assertEqual(errors, [])

        status = json.loads(urllib.request.urlopen(urllib.request.Request(
            self.evse_url + "api/state", headers={"Authorization": f"Bearer {TOKEN}"}),
            timeout=5).read())
        self.assertTrue(any(c["elements"].get("opModFixedW") == 5000
                            for c in status["ports"][0]["controls"]))
        self.assertEqual(self.pev.terminate(), -signal.SIGTERM, self.pev.output)
        self.assertEqual(self.evse.terminate(), -signal.SIGTERM, self.evse.output)
        self.assertNotIn("Traceback", self.evse.output + self.pev.output)
