"""Helpers for the project's browser tests and dashboard benchmarks (as ``numpy.testing`` is for numpy's).

Start the dashboard (``streamlit run app.py``) on a free localhost port over a given workspace, stop it again, and
open Debian's headless chromium through Playwright (Playwright's own browser download does not work offline).

Only the standard library is imported here; callers pass in their Playwright object, so importing this is cheap.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The plotly charts a user sees: during a rerun Streamlit keeps the previous run's elements in the page, marked
# stale (data-stale="true") and, for a chart redrawn at a new place, hidden at zero size, until the run ends; a
# count of every ".js-plotly-plot" then finds a panel twice. A JavaScript expression for page.evaluate.
SHOWN_PLOTS_JS = (
    "[...document.querySelectorAll('.js-plotly-plot')]"
    ".filter(p => !p.closest('[data-stale=\"true\"]') && p.getBoundingClientRect().width > 0)"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(
    workspace: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` over ``workspace`` on a free localhost port; returns the process and its URL.

    The server runs from the repository root with ``MMVIZ_WORKSPACE`` and ``PYTHONPATH`` set (plus ``env``, which
    wins). Its output goes to ``log_path`` (stdout and stderr together), or nowhere when that is None. Returns once
    ``/_stcore/health`` answers "ok"; if the server exits first or ``timeout`` seconds pass, it is killed and
    RuntimeError is raised, with the end of the log when there is one.
    """
    port = free_port()
    full_env = {**os.environ, "MMVIZ_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT), **(env or {})}
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    if log_path is None:
        proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with open(log_path, "wb") as log:  # the child keeps its own copy of the file descriptor
            proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    proc.kill()
    proc.wait()
    tail = f":\n{Path(log_path).read_text(errors='replace')[-2000:]}" if log_path is not None else ""
    raise RuntimeError(f"streamlit did not start{tail}")


def stop_dashboard(proc: subprocess.Popen) -> None:
    """Stop a server from :func:`start_dashboard`: terminate it, and kill it if it has not exited after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def launch_chromium(
    playwright: Any, profile_dir: str | os.PathLike, viewport: Mapping[str, int] | None = None, **options: Any
) -> Any:
    """Debian's chromium, headless, with a fresh profile in ``profile_dir``: a Playwright ``BrowserContext``.

    ``playwright`` is the object ``sync_playwright()`` yields. ``viewport`` (``{"width": ..., "height": ...}``) is
    Playwright's default (1280x720) when None; other ``options`` go to ``launch_persistent_context`` unchanged.
    """
    if viewport is not None:
        options["viewport"] = dict(viewport)
    return playwright.chromium.launch_persistent_context(
        str(profile_dir), executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS), **options
    )


def postgres_bin() -> Path | None:
    """The bin folder of the newest PostgreSQL server installed from Debian's packages, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def start_postgres(folder: str | os.PathLike, timeout: float = 60.0) -> str:
    """Start a throw-away PostgreSQL cluster in ``folder`` (a fresh, empty directory), listening on a unix socket
    only; returns a URL template with ``{db}`` for the database name (user ``postgres``, trust authentication).

    As root the server runs as the ``postgres`` user (``initdb`` refuses root), so ``folder`` is handed to it.
    Raises RuntimeError with the server log when it does not start; :func:`stop_postgres` stops it.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian's 'postgresql' package; 'make system' installs it).")
    folder = Path(folder)
    data, sock, log = folder / "data", folder / "sock", folder / "server.log"
    sock.mkdir(parents=True)
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(["chown", "-R", "postgres", str(folder)], check=True)
    port = free_port()

    def run(*argv: str) -> None:
        out = subprocess.run([*as_user, *argv], capture_output=True, text=True, timeout=timeout)
        if out.returncode:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {out.stderr.strip()}\n{tail}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    options = f"-c listen_addresses='' -k {sock} -p {port} -c fsync=off -c synchronous_commit=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", str(int(timeout)), "start")
    return f"postgresql://postgres@/{{db}}?host={sock}&port={port}"


def stop_postgres(folder: str | os.PathLike) -> None:
    """Stop the cluster :func:`start_postgres` started in ``folder`` (immediate shutdown: the cluster is thrown away; idempotent)."""
    bin_dir = postgres_bin()
    data = Path(folder) / "data"
    if bin_dir is None or not (data / "postmaster.pid").exists():
        return
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
        capture_output=True,
        timeout=60,
    )


def missing_probe_families(keys: set[str] | list[str]) -> list[str]:
    """The registered probes' key patterns (``"name: pattern"``) that none of ``keys`` matches (imports the probes)."""
    from mmviz.probes import PROBES

    keys = set(keys)
    missing = []
    for entry in PROBES:
        for pattern in entry.flags["keys"]:
            stem = pattern.split("/<m>")[0]
            if not any(k == stem or k.startswith(stem + "/") for k in keys):
                missing.append(f"{entry.name}: {pattern}")
    return missing


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition", poll: float = 0.05) -> Any:
    """Call ``predicate()`` until it returns something true, and return that; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
