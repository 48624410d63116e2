"""A PostgreSQL workspace URL may carry a password. Every user of a machine can read any process's command line
(``ps``, ``/proc/PID/cmdline``), only its owner its environment: the processes mmviz starts (a trainer, the
scheduler, an analysis process started as a program) get the URL in their environment, never on their command line,
and ``mmviz dashboard --workspace URL`` hands the server the URL as given."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mmviz import launcher
from mmviz.probes.record import AnalysisSupervisor
from mmviz.scheduler import scheduler_pid
from mmviz.store import open_store
from mmviz.testing import ROOT, free_port, wait_for
from mmviz.training.config import build_run_config

PASSWORD = "s3cret-pw"
TINY = ["data.n_train=120", "train.batch_size=32"]


def with_password(url: str) -> str:
    """The test server trusts local connections, so it accepts the URL with any password in it."""
    assert url.startswith("postgresql://postgres@")
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def started(pid: int) -> int:
    """``pid`` once it runs its own program: until its exec, /proc shows this process's command line and environment,
    and for a moment after the exec has closed the parent's pipe (``subprocess.Popen`` returns then) the kernel has
    not yet set the new program's: /proc shows an empty command line and environment."""
    own = cmdline(os.getpid())
    wait_for(lambda: cmdline(pid) not in ("", own), 60, f"process {pid} to start its program")
    return pid


def environ(pid: int) -> dict[str, str]:
    items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in items if b"=" in item)


def test_child_processes_get_a_workspace_password_in_their_environment_only(postgres_workspace):
    url = with_password(postgres_workspace)
    with open_store(url) as store:
        run_id = launcher.prepare_run(store, build_run_config("synthetic", "baseline", TINY, epochs=2))
        trainer = launcher.spawn_run(store, run_id)
        started(trainer.pid)
        assert PASSWORD not in cmdline(trainer.pid) and "--workspace" not in cmdline(trainer.pid)
        assert trainer.wait(180) == 0  # it found the workspace in its environment and trained the run
        assert store.get_run(run_id)["status"] == "finished"

        follower = AnalysisSupervisor(url, run_id, store.run_dir(run_id), fork=False)  # started as a program
        follower.ensure_running()
        started(follower.proc.pid)
        assert PASSWORD not in cmdline(follower.proc.pid)
        assert environ(follower.proc.pid)["MMVIZ_WORKSPACE"] == url
        assert follower.proc.wait(120) == 0  # connected, found the run over, ended

        assert launcher.ensure_scheduler(store)
        pid = started(wait_for(lambda: scheduler_pid(store), 30, "the scheduler's lock"))
        try:
            assert PASSWORD not in cmdline(pid) and environ(pid)["MMVIZ_WORKSPACE"] == url
        finally:
            os.kill(pid, signal.SIGTERM)


def test_the_dashboard_command_hands_a_workspace_url_over_intact(postgres_workspace):
    url = with_password(postgres_workspace)
    argv = [sys.executable, "-m", "mmviz", "dashboard", "--workspace", url, "--port", str(free_port())]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMVIZ_WORKSPACE": "/elsewhere"}
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # the command becomes the server (exec): same process, Streamlit's command line, the URL in its environment
        wait_for(lambda: "streamlit" in cmdline(server.pid), 60, "the server to start")
        assert environ(server.pid)["MMVIZ_WORKSPACE"] == url  # a folder path made of the URL mangled it before
        assert PASSWORD not in cmdline(server.pid)
    finally:
        server.terminate()
        server.wait(30)
