"""End to end in headless Chromium: a model written as the papers' official repositories write theirs (not built by
mmviz; ``examples/official_style_model.py``), wrapped by the adapter and trained in a plain PyTorch loop watched with
mmviz.api, lands every probe's key family in the store, is live on the Live page and its snapshots show on the
Embeddings page, as a built-in run's are (issue 13, "Must show")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mmviz.store import open_store
from mmviz.testing import (
    CHROMIUM,
    ROOT,
    SHOWN_PLOTS_JS,
    launch_chromium,
    missing_probe_families,
    start_dashboard,
    stop_dashboard,
)

pytestmark = pytest.mark.e2e
TIMEOUT_MS = 180_000  # generous: the user's process and the server share two busy cores
ARTIFACTS = ROOT / "tests" / "artifacts"

USER_LOOP = """
import sys, time
sys.path.insert(0, {examples!r})
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from official_style_model import AVClassifier, ToyAudioVisual
from plain_loop import adapt
import mmviz.api
torch.manual_seed(0)
model = AVClassifier(n_classes=6)
opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
train = DataLoader(ToyAudioVisual(64, seed=0), batch_size=32, shuffle=True)
val = DataLoader(ToyAudioVisual(48, seed=1), batch_size=64)
net = adapt(model)
with mmviz.api.watch(net, train_loader=train, val_loader=val, epochs=400, optimizer=opt, workspace={ws!r},
                     name="my-own-loop") as run:
    print(run.run_id, flush=True)
    for epoch in range(400):
        model.train()
        for batch in train:
            out = net(batch)
            loss = F.cross_entropy(out.logits, batch["label"])
            opt.zero_grad(); loss.backward()
            run.after_backward(out, batch, loss)
            opt.step()
            time.sleep(0.05)
        run.end_epoch()
"""


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A user's loop training in its own process and a dashboard over its workspace: ``(url, run_id)``."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium ('make browser' installs it).")
    tmp = tmp_path_factory.mktemp("e2e-own-loop")
    ws = tmp / "ws"
    code = textwrap.dedent(USER_LOOP.format(examples=str(ROOT / "examples"), ws=str(ws)))
    user = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = user.stdout.readline().split()[0]
    log = tmp / "streamlit.log"
    proc, url = start_dashboard(ws, log, env={"MMVIZ_PROJECTION_WARM": "0"})
    yield url, run_id, ws
    stop_dashboard(proc)
    user.send_signal(signal.SIGKILL)
    user.wait(30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"), viewport={"width": 1400, "height": 2000})
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx.new_page()
        ctx.close()


def _latest_step(page) -> int:
    text = page.get_by_text(re.compile(r"latest step \d+")).first.inner_text()
    return int(re.search(r"latest step (\d+)", text).group(1))


def test_own_loop_is_live_and_its_snapshots_show(live_run, page):
    url, run_id, ws = live_run
    page.goto(url + "/")  # the entry script first, so st.navigation owns the pages
    page.get_by_text("Runs").first.wait_for()
    try:
        page.goto(f"{url}/live?run={run_id}")
        page.get_by_text(re.compile(r"running · epoch \d+/400")).first.wait_for()
        page.wait_for_function("() => /latest step [1-9]/.test(document.body.innerText)", timeout=TIMEOUT_MS)
        first = _latest_step(page)
        page.wait_for_function(
            f"() => {{ const m = document.body.innerText.match(/latest step (\\d+)/); return m && +m[1] > {first}; }}",
            timeout=TIMEOUT_MS,
        )  # the user's loop keeps writing and the page follows without a reload
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=TIMEOUT_MS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "own-loop-live.png"))

        # every probe's key family lands in the store (proto/drift needs a second epoch)
        store = open_store(ws)
        deadline = time.time() + 180
        while (missing := missing_probe_families(store.metric_keys(run_id))) and time.time() < deadline:
            time.sleep(1.0)
        assert not missing, missing
        assert store.get_run(run_id)["config"]["model"]["class"] == "ModelAdapter"
        assert not store.load_artifacts(run_id, "snapshot").empty
        page.goto(f"{url}/embeddings?run={run_id}&projection=pca")
        page.locator(".js-plotly-plot").nth(2).locator(".nsewdrag").wait_for()
        # one panel per modality (audio, visual) and the fused features, each with points; the page reruns as the
        # user's loop writes snapshots, and until a rerun ends the previous run's charts stay in the page (stale, or
        # hidden at zero size), so count the panels shown
        page.wait_for_function(
            f"() => {{ const shown = {SHOWN_PLOTS_JS}; return shown.length === 3 && "
            "shown.every(p => p.getBoundingClientRect().width > 100 && p.querySelectorAll('path.point').length > 0); }",
            timeout=TIMEOUT_MS,
        )
        page.screenshot(path=str(ARTIFACTS / "own-loop-embeddings.png"), full_page=True)

        # restart and fork are refused on the Runs page, with the run's exact settings shown instead
        page.goto(url + "/")  # the Runs page is the entry page
        page.get_by_role("tab", name="Restart").first.wait_for()
        page.get_by_role("tab", name="Restart").first.click()
        page.get_by_text(re.compile("trained by your own code through the mmviz.api calls")).first.wait_for()
        page.get_by_text(re.compile(r'"origin": "api"')).first.wait_for()  # the settings, drawn after the caption
        assert page.get_by_text('"my-own-loop"').count() == 0  # settings shown as JSON code, not the name
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "own-loop-failure.png"), full_page=True)
        raise
