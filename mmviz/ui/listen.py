"""The dashboard listens on this machine only, wherever it is started from, unless opened on purpose.

The dashboard can start processes and delete runs, so it must not be reachable from the network by accident.
``python -m mmviz dashboard`` passes ``--server.address 127.0.0.1`` itself (and ``.streamlit/config.toml`` next
to ``app.py`` says the same); :func:`check_listen_address` is the last guard for any other way of starting it: a
server configured for another address serves only a one-sentence refusal, unless ``MMVIZ_LISTEN_ALL=1`` (what
``python -m mmviz dashboard --listen-all`` sets), in which case every page carries a warning.
"""

from __future__ import annotations

import os

import streamlit as st

LOOPBACK = ("127.0.0.1", "localhost", "::1")
LISTEN_ALL_ENV = "MMVIZ_LISTEN_ALL"


def check_listen_address() -> None:
    """Stop the page unless the server listens on a loopback address or the user opened it on purpose."""
    address = st.get_option("server.address") or ""
    if address in LOOPBACK or not st.context.headers:  # no headers: a script run without a server (AppTest)
        return
    where = repr(address) if address else "every network interface"
    if os.environ.get(LISTEN_ALL_ENV) == "1":
        st.warning(
            f"This dashboard listens on {where}: anyone who can reach this machine can start and delete runs.",
            icon=":material/warning:",
        )
        return
    st.error(
        f"This dashboard server listens on {where}, not only on this machine; restart it with "
        "'python -m mmviz dashboard' (or --listen-all to open it on purpose)."
    )
    st.stop()
