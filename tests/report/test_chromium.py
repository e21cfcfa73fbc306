"""The HTML report of a real watched run, opened in headless Chromium.

Checks: no console messages at all (the page has no script; a blocked script or a blocked
remote load would log one), the verdict and every plot are in the rendered page, every image
decodes, and the screenshot is not blank. Skips only when Chromium is missing and ``CI`` is
unset; in CI a missing Chromium fails the test.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import gradientflow
from gradientflow.demo import demo_recipe
from gradientflow.report.html import write_html
from gradientflow.schedule import Schedule

pytest.importorskip("matplotlib")

PLOTS = ["profile", "heat-grad", "heat-update", "activations", "loss"]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
]
# Runs after the page loads; writes what the test needs to know into the DOM it dumps.
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => [i.id, i.complete, i.naturalWidth,
                                              i.getBoundingClientRect().height]);
  const v = document.getElementById('verdict');
  document.body.dataset.probe = JSON.stringify({imgs: imgs,
    verdict: v ? [v.innerText, v.getBoundingClientRect().height] : null});
});</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (CI must install Debian's chromium package)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _run(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _watched_demo_trace(steps: int = 30) -> gradientflow.Trace:
    """The demo: the 20-layer sigmoid MLP on digits, watched for ``steps`` optimizer steps."""
    torch.manual_seed(0)
    recipe = demo_recipe(epochs=2)
    model, opt, loss_fn = recipe["model"], recipe["optimizer"], recipe["loss_fn"]
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        for i, (x, y) in enumerate(recipe["batches"]):
            if i == steps:
                break
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            mon.log(loss=loss)
            opt.step()
    return mon.trace


def _demo_report(folder: Path) -> Path:
    trace = _watched_demo_trace()
    assert trace.n_records == 30 and trace.n_layers == 20
    return write_html(trace, folder / "report.html", title="gradientflow demo: 20 sigmoid layers")


@pytest.mark.slow
def test_demo_report_renders_in_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    report = _demo_report(tmp_path)
    _check_screenshot(browser, report, tmp_path)
    _check_dom(browser, report, tmp_path)


def _check_screenshot(browser: str, report: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    res = _run(
        browser, tmp_path, f"--screenshot={shot}", "--window-size=1100,1600", report.as_uri()
    )
    assert res.returncode == 0, res.stderr[-2000:]
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console  # no script errors, no blocked or failed loads
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1100)
    assert pixels.std() > 0.1  # not blank
    assert (pixels.mean(axis=-1) < 0.9).mean() > 0.03  # a fair share of non-white pixels


def _check_dom(browser: str, report: Path, tmp_path: Path) -> None:
    """The verdict and every plot rendered, each image decoded and shown with a height."""
    # A copy with the probe script (the report's own policy forbids scripts, rightly).
    probed = tmp_path / "probed.html"
    probed.write_text(
        re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", report.read_text()).replace(
            "</body>", PROBE + "</body>"
        )
    )
    res = _run(browser, tmp_path, "--dump-dom", "--virtual-time-budget=5000", probed.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    match = re.search(r'data-probe="([^"]*)"', res.stdout)
    assert match, res.stdout[:2000]
    probe = json.loads(html.unescape(match.group(1)))
    verdict_text, verdict_height = probe["verdict"]
    assert verdict_text.startswith("Critical") and verdict_height > 20
    assert "vanish" in verdict_text.lower()
    assert [img[0] for img in probe["imgs"]] == [f"plot-{p}" for p in PLOTS]
    for img_id, complete, natural_width, shown_height in probe["imgs"]:
        assert complete and natural_width > 400 and shown_height > 150, img_id
