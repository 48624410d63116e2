"""The reproduction script's quick mode writes a well-formed document, with figures, from real runs."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_reproduction_document(tmp_path):
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    out = tmp_path / "docs" / "results.md"
    assert mod.main(["--quick", "--out", str(out), "--sections", "mfeat,premise,cotrain"]) == 0
    text = out.read_text()
    assert "### mfeat (pix + fou)" in text and "| method | fused % best | fused % last | `fou` probe % best" in text
    mfeat = text.split("### mfeat (pix + fou)")[1].split("###")[0]
    for method in ("baseline", "ogm_ge", "pmr"):
        assert mfeat.count(f"| {method} | ") == 1
    assert "Alone (unimodal reference, test accuracy): `pix`" in text
    assert "![mfeat (pix + fou): curves over epochs](curves_mfeat.png)" in text
    png = out.parent / "curves_mfeat.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "### Premise checks" in text and "re-init strengths" in text and "scale ρB" in text
    assert "| 0.9 | " in text and "Co-learning" in text
    assert "_Section made by `bench/reproduce.py --quick --sections mfeat`" in text


def _module():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def rerun_section(mod, tmp_path: Path, name: str, body: str, info: dict) -> tuple[dict, dict]:
    """Assemble the committed document with one section freshly made (``body``, ``info``) in an empty cache, as a
    checkout without the cache does; return the sections ``(before, after)``."""
    out = tmp_path / "results.md"
    committed = (ROOT / "docs" / "results.md").read_text()
    out.write_text(committed)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{name}.md").write_text(body)
    (cache / f"{name}.json").write_text(json.dumps({"minutes": 1.0, "load": "load average 1.0 / 1.0 / 1.0", **info}))
    mod.assemble(out, cache, tmp_path)
    return mod.sections_in(committed), mod.sections_in(out.read_text())


def test_one_section_rerun_on_a_checkout_without_the_cache_keeps_the_other_sections(tmp_path):
    mod = _module()
    info = {"command": "bench/reproduce.py --sections premise"}
    before, after = rerun_section(mod, tmp_path, "premise", "### Premise checks (new)\n\nnew body\n", info)
    assert set(before) == set(mod.SECTION_ORDER)  # the committed document carries every section between marks
    assert after["premise"].startswith("### Premise checks (new)\n\nnew body")
    assert "_Section made by `bench/reproduce.py --sections premise` in 1.0 min" in after["premise"]
    assert {k: v for k, v in after.items() if k != "premise"} == {k: v for k, v in before.items() if k != "premise"}


def test_a_table_that_uses_fewer_seeds_than_the_command_says_so_in_its_footer(tmp_path):
    mod = _module()
    assert mod.provenance("avfashion", 3, quick=False) == {
        "command": "bench/reproduce.py --seeds 3 --sections avfashion",
        "seeds": 1,  # its table takes the first seed only
    }
    assert "seeds" not in mod.provenance("mfeat", 3, quick=False)  # takes the command's seeds
    assert "seeds" not in mod.provenance("avfashion", 1, quick=False)
    _, after = rerun_section(mod, tmp_path, "avfashion", "### AV-Fashion (new)\n\nbody\n",
                             mod.provenance("avfashion", 3, quick=False))  # fmt: skip
    footer = "`bench/reproduce.py --seeds 3 --sections avfashion`; this table uses its first 1 seed(s) in 1.0 min"
    assert footer in after["avfashion"]
