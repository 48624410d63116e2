"""The reproduction script's quick mode writes a well-formed table from real runs."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_reproduction_table(tmp_path):
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    out = tmp_path / "results.md"
    assert mod.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "### mfeat (pix + fou)" in text and "### synthetic (dominant)" in text
    for method in ("baseline", "ogm_ge", "pmr"):
        assert text.count(f"| {method} | ") == 2
    assert "Alone (unimodal reference, test accuracy): `pix`" in text
    assert "| 0.9 | " in text and "Co-learning" in text
