"""The dashboard listens on 127.0.0.1 wherever it is started from; another address is refused (item 11)."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mmviz.testing import CHROMIUM, ROOT, free_port, launch_chromium, stop_dashboard


def _listening(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _wait_healthy(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the dashboard did not start")


def test_dashboard_command_binds_loopback_from_anywhere(tmp_path):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), STREAMLIT_SERVER_ADDRESS="0.0.0.0")  # a hostile environment
    cmd = [sys.executable, "-m", "mmviz", "dashboard", "--port", str(port), "--workspace", str(tmp_path / "ws")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(proc, port)
        assert _listening(port) == {"0100007F"}  # 127.0.0.1 only
    finally:
        stop_dashboard(proc)
    deadline = time.monotonic() + 10
    while _listening(port) and time.monotonic() < deadline:  # stopping the command stops the server it runs
        time.sleep(0.2)
    assert _listening(port) == set()


def test_a_server_on_every_interface_serves_only_a_refusal(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), MMVIZ_WORKSPACE=str(tmp_path / "ws"))
    env.pop("MMVIZ_LISTEN_ALL", None)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "0.0.0.0"]
    cmd += ["--server.port", str(port), "--server.headless", "true"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(proc, port)
        with sync_playwright() as p:
            browser = launch_chromium(p, tmp_path / "profile")
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("not only on this machine").wait_for(timeout=60_000)
            assert page.get_by_text("Start demo run").count() == 0  # no page of the app was drawn
            browser.close()
    finally:
        stop_dashboard(proc)
