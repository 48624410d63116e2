"""The dashboard never imports torch: every page and the launch form, run in a fresh process (AppTest) that is
checked for ``torch`` in ``sys.modules``; a launch whose settings fail the trainer's data checks shows the
trainer's one sentence, read from the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmviz.store import open_store
from mmviz.ui.labels import md

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
from streamlit.testing.v1 import AppTest

at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.run()
errors = [e.value for e in at.exception]
first = sorted(m for m in ("scipy", "sklearn", "umap") if m in sys.modules)  # after the first page (the runs page)
for page in ("live", "compare", "sweeps", "embeddings", "teach", "runs"):
    at.switch_page(f"pages/{page}.py").run()
    errors += [e.value for e in at.exception]
refused = []
if sys.argv[2] == "launch":
    at.selectbox(key="launch.dataset").select("synthetic").run()
    at.selectbox(key="launch.method").select("unimodal").run()
    at.text_input(key="launch.method.unimodal.modality").set_value("zzz")
    [b for b in [*at.button, *at.get("form_submit_button")] if b.label == "Launch run"][0].click().run()
    errors += [e.value for e in at.exception]
    refused = [e.value for e in at.error]
print(json.dumps({"torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
                  "models": "models.net" in sys.modules, "errors": errors, "refused": refused, "first": first}))
"""


def run_app(workspace: Path, mode: str) -> dict:
    env = {**os.environ, "MMVIZ_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "app.py"), mode],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_page_renders_without_importing_torch(filled_workspace):
    result = run_app(filled_workspace["workspace"], "pages")
    assert not result["errors"]
    assert result["torch"] == [] and not result["models"]
    # nor scipy for the first page (the Embeddings page imports it for its alignments, ~0.13 s; the UMAP worker
    # runs in its own process)
    assert result["first"] == []


@pytest.mark.slow
def test_a_launch_refused_by_the_trainer_shows_its_sentence_without_importing_torch(scratch_workspace):
    from mmviz.training.build import check_run_config
    from mmviz.training.config import build_run_config

    ws = scratch_workspace["workspace"]
    result = run_app(ws, "launch")
    with pytest.raises(Exception) as cli:  # the sentence the CLI prints for the same settings
        check_run_config(build_run_config("synthetic", "unimodal", ["method.modality=zzz"]))
    assert result["refused"] == [md(str(cli.value))] and not result["errors"]
    assert result["torch"] == []
    with open_store(ws) as store:
        failed = [r for r in store.list_runs().to_dict("records") if r["status"] == "failed"]
    assert [r["error"] for r in failed] == [str(cli.value)]
