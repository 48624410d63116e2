"""AppTest helpers: open a dashboard page against a given workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def open_page(monkeypatch):
    """``open_page(workspace, 'live', run='ID')`` -> an AppTest that has run the page once (query params optional)."""

    def open_(workspace: Path, page: str, **query: str) -> AppTest:
        monkeypatch.setenv("MMVIZ_WORKSPACE", str(workspace))
        at = AppTest.from_file(APP, default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        if page != "runs":
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
        return at

    return open_
