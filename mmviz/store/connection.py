"""One thread-safe SQLite connection in WAL mode, with transactions that retry while the database is locked.

Streamlit calls from several threads and every training run is its own process, so: one connection
(``check_same_thread=False``) guarded by an ``RLock``; writes are ``BEGIN IMMEDIATE`` transactions, which take
the write lock up front so the busy timeout applies (a deferred transaction that upgrades from read to write can
fail at once with "database is locked"); and a locked error that outlasts the timeout is retried a few times.
A damaged database file (SQLite's "malformed" / "not a database") is reported as a ``StoreError`` that names the
file and the way to recover; nothing is written to it.

A process that forks a child which opens the store itself (the trainer forking its analysis process) forks inside
:func:`closed_for_fork`, which closes every store connection of the process (SQLite and PostgreSQL), with no thread
inside one, and each opens again at its next use (in the parent). A child forked with a connection open inherits it:
- SQLite keeps a per-process record of the locks held on each database file; the child's own new connection then
  believes it holds locks that only the parent holds. When the parent dies (a killed trainer) while the child still
  writes, the next process that closes the store takes it for unused, checkpoints it and deletes its WAL file, and
  every later row of the child goes to the deleted file (SQLite's "How To Corrupt An SQLite Database File", 2.6).
- A PostgreSQL connection's socket stays open in the child: the server keeps a killed trainer's session, and a
  write transaction it was in, with the store-wide write lock, until the child ends, while the child (and every
  other writer) waits for that lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mmviz.errors import StoreError

BUSY_TIMEOUT_MS = 30_000
RETRIES = 6
_T = TypeVar("_T")
_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()  # this process's store connections (both kinds), for closed_for_fork
_OPEN_LOCK = threading.Lock()


def track(conn: Any) -> None:
    """Register an open store connection (a :class:`Reopening`) for :func:`closed_for_fork`."""
    with _OPEN_LOCK:
        _OPEN.add(conn)


def untrack(conn: Any) -> None:
    """Forget a closed store connection."""
    with _OPEN_LOCK:
        _OPEN.discard(conn)


class Reopening:
    """What both store connections share: a lock that one thread holds at a time, closing for good (:meth:`close`),
    and closing over a fork (:meth:`close_for_fork`) to open again (:meth:`_connect`) at the next use."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._conn: Any = self._connect()
        track(self)

    def _connect(self) -> Any:
        raise NotImplementedError

    def _open(self) -> Any:
        """The connection, opened again if it was closed for a fork (call with the lock held)."""
        if self._conn is None:
            if self._closed:
                raise StoreError("The run store was closed; open it again.")
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent; a closed connection is not opened again)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        untrack(self)

    def close_for_fork(self) -> None:
        """Close the connection until its next use (the caller holds the lock: :func:`closed_for_fork`)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def hold(self) -> threading.RLock:
        """The lock every use of the connection takes."""
        return self._lock


def is_damaged(exc: sqlite3.DatabaseError) -> bool:
    """Return whether the error says the database file itself is damaged (SQLITE_CORRUPT / SQLITE_NOTADB)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def damaged_store(path: Path, exc: BaseException) -> StoreError:
    """The one-sentence error for a damaged run store: which file, and what to do (it is never overwritten)."""
    ws = path.parent
    return StoreError(
        f"The run store {str(path)!r} is damaged ({exc}) and mmviz leaves it untouched; copy it with its -wal file "
        f"to a safe place, then recover what is readable with 'sqlite3 {path.name} .recover | sqlite3 recovered.db' "
        f"and use recovered.db as mmviz.db of a new workspace, or start a new workspace instead of {str(ws)!r}."
    )


def is_locked(exc: sqlite3.OperationalError) -> bool:
    """Return whether the error is SQLite's 'database is locked' / 'busy', which is worth retrying."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)) or "locked" in str(exc)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` that never writes.

    SQLite's ``mode=ro`` reads a WAL database while its ``-shm`` file can be used: it exists (a process has the store
    open, or had it) or the folder is writable. In a folder this user cannot write, with no ``-shm`` file (no process
    has the store open), SQLite refuses (SQLITE_READONLY_*); when no ``-wal`` file holds rows either, the main file
    is the whole store and is read as ``immutable``. Nobody can be writing it then, except a process that starts
    during the read (a reading command takes milliseconds). With rows in a ``-wal`` file that cannot be read, it is
    refused with a sentence rather than shown without them."""
    path = Path(path).absolute()
    wal = path.with_name(path.name + "-wal")
    for immutable in (False, True):
        params = "mode=ro&immutable=1" if immutable else "mode=ro"
        conn = sqlite3.connect(f"{path.as_uri()}?{params}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)  # fmt: skip
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if immutable or (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != sqlite3.SQLITE_READONLY:
                raise
            if wal.is_file() and wal.stat().st_size > 0:
                raise StoreError(
                    f"Cannot read {str(path)!r} without writing to its folder ({exc}): its -wal file holds rows that "
                    "only a process that can write the folder can read; open the workspace once as its owner."
                ) from exc
    raise AssertionError("unreachable")


class Connection(Reopening):
    """A WAL-mode SQLite connection shared by threads; ``write`` / ``read`` / ``query`` are the only entry points."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """Connect to ``path`` and switch it to WAL with a 30 s busy timeout and ``synchronous=NORMAL``; with
        ``read_only``, open it for reading only (:func:`connect_read_only`)."""
        self.path = path
        self.read_only = read_only
        super().__init__()

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return connect_read_only(self.path)
        path = self.path
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the run store {str(path)!r} ({exc}); check the path.") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._retried(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"Cannot switch {str(path)!r} to WAL mode (got {mode!r}); put the workspace on a local disk."
                )
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def retry(self, fn: Callable[[], _T]) -> _T:
        """Call ``fn()`` under the lock, retrying with backoff while SQLite reports the database as locked."""
        with self._lock:
            self._open()
            return self._retried(fn)

    def _retried(self, fn: Callable[[], _T]) -> _T:
        with self._lock:
            for attempt in range(RETRIES):
                try:
                    return fn()
                except sqlite3.OperationalError as exc:
                    if not is_locked(exc) or attempt == RETRIES - 1:
                        if is_damaged(exc):
                            raise damaged_store(self.path, exc) from exc
                        raise
                except sqlite3.DatabaseError as exc:
                    if is_damaged(exc):
                        raise damaged_store(self.path, exc) from exc
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(conn)`` inside one ``BEGIN IMMEDIATE`` transaction: all of it is committed, or none of it."""
        if self.read_only:
            raise StoreError(
                f"The run store {str(self.path)!r} is open for reading only (its folder is not writable); this needs "
                "a workspace you can write."
            )

        def attempt() -> _T:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return self.retry(attempt)

    def read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(conn)`` inside one read transaction, so that all its queries see the same snapshot."""

        def attempt() -> _T:
            try:
                self._conn.execute("BEGIN")
                return fn(self._conn)
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

        return self.retry(attempt)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Return all rows of one statement."""
        return self.retry(lambda: self._conn.execute(sql, tuple(params)).fetchall())

    def check_integrity(self) -> None:
        """Raise the damaged-store ``StoreError`` unless SQLite's ``quick_check`` finds the file whole (reads only)."""
        rows = [str(r[0]) for r in self.query("PRAGMA quick_check(1)")]
        if rows != ["ok"]:
            found = " ".join(rows).replace("*** in database main ***", "").split()
            raise damaged_store(self.path, "quick_check: " + " ".join(found)[:200])


@contextmanager
def closed_for_fork() -> Iterator[None]:
    """Fork inside this: every store connection of this process is closed (see the module docstring) and no thread
    is inside one of them; after it, each opens again at its next use, in the parent."""
    with _OPEN_LOCK:
        held = list(_OPEN)
    locked: list[Reopening] = []
    try:
        for conn in held:
            conn.hold().acquire()
            locked.append(conn)
            conn.close_for_fork()
        yield
    finally:
        for conn in locked:
            conn.hold().release()
