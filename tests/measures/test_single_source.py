"""No quantity has two implementations: every measure is defined in mmviz.measures and imported from there.

An AST scan of the library outside ``mmviz/measures``: no function (or method) may carry the name of a measure of
the core, nothing may import the estimators the core wraps (scikit-learn's KMeans, silhouette, logistic
regression), and balancing methods and probes switch a model to eval mode only through ``measures.eval_mode``
(which restores every submodule's own flag).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mmviz.measures

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "mmviz"
CORE = LIBRARY / "measures"
MEASURES = frozenset(name for name in mmviz.measures.__all__ if not name.isupper())
# What the core wraps; importing it elsewhere would start a second implementation.
WRAPPED = frozenset({"KMeans", "MiniBatchKMeans", "silhouette_score", "silhouette_samples", "LogisticRegression"})
NO_EVAL_CALLS = ("balancing", "probes")  # packages whose eval-mode switches must go through measures.eval_mode


def library_files() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*.py") if CORE not in p.parents)


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in MEASURES:
            found.append(f"{rel}:{node.lineno} defines {node.name!r}; import it from mmviz.measures")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {a.name.rsplit(".", 1)[-1] for a in node.names}
            for name in sorted(names & WRAPPED):
                found.append(f"{rel}:{node.lineno} imports {name!r}; use the mmviz.measures function that wraps it")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "eval"
            and not node.args
            and rel.parts[1] in NO_EVAL_CALLS
        ):
            found.append(f"{rel}:{node.lineno} calls .eval(); use mmviz.measures.eval_mode (restores every flag)")
    return found


def test_the_scan_sees_the_library():
    files = library_files()
    assert len(files) > 50 and any(p.name == "relearn.py" for p in files) and not any(CORE in p.parents for p in files)
    assert {"compute_shapley", "compute_kmeans_purity", "compute_class_means", "eval_mode"} <= MEASURES


def test_the_scan_catches_a_second_implementation(tmp_path):
    bad = LIBRARY / "balancing" / "_scan_probe.py"  # must sit under balancing/ for the eval() rule
    bad.write_text(
        "from sklearn.cluster import KMeans\n\n\ndef compute_purity(labels, clusters):\n    return 1.0\n\n\n"
        "def f(model):\n    model.eval()\n"
    )
    try:
        found = violations(bad)
    finally:
        bad.unlink()
    assert len(found) == 3 and "compute_purity" in found[1] and "KMeans" in found[0] and ".eval()" in found[2]


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_no_measure_is_implemented_outside_the_core(path):
    assert violations(path) == []
