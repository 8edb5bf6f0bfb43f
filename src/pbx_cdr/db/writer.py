"""Group commit: many small, durable call writes for the price of one transaction.

Every committed transaction costs a flush to stable storage (SQLite's WAL fsync under
``synchronous=FULL``, PostgreSQL's WAL flush), and SQLite lets one writer in at a time. Ingest
requests that each committed their own transaction were therefore capped by the disk, not by the
work. Here the requests of one process hand their already-validated calls to one writer thread,
which takes everything that is waiting, writes it in one transaction, commits, and only then
releases every waiter with its own per-call statuses. Durability is unchanged: no request learns
of its calls before they are committed.

- **Per process.** Each server process has its own writer; several processes are serialized by
  the database itself, as before. On SQLite the writers of all processes also take turns through
  an ``flock`` on ``<database>.writer-lock``: SQLite's own busy handler polls with sleeps of up to
  100 ms, and two processes' writers left the lock idle between their turns while requests waited;
  the kernel hands an ``flock`` over the moment it is released. A gate in front of the turn keeps
  turns in order (:class:`_TurnLock`), and a writer takes its group only once the turn is its own,
  so everything that arrived while the other process wrote joins it; answers go out after the turn
  is passed on. (Two server processes' writers had each committed about 8 requests a turn, half of
  the time waiting for the other's; now about twice that, for about a quarter more POSTs a second.)
- **Same answers.** Requests of one account whose uuids do not overlap are merged into one
  :func:`~pbx_cdr.db.queries.calls.upsert_calls`; a request that names a uuid an earlier waiting
  request also names is applied after it, inside the same transaction, so identical concurrent
  posts still give one ``created`` and then ``unchanged``. Hour counts move with the rows.
- **Isolation of failures.** When the shared transaction fails, it is rolled back and every
  request is retried in a transaction of its own, so one request's bad items fail only that
  request. A lost database fails them all at once (503), without retries.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from pbx_cdr.db import engine as db
from pbx_cdr.db.queries.calls import AccountChanges, upsert_calls
from pbx_cdr.domain.call import Call
from pbx_cdr.errors import ServiceUnavailable

# A group stops growing at this many calls (a single larger request still goes alone): it bounds
# the transaction's length, the memory it holds and the bind parameters of one statement.
MAX_GROUP_CALLS = 5000
# The thread ends after this long without work and is started again by the next request.
IDLE_SECONDS = 30.0
# A request's transaction refused as a deadlock's victim or a serialization failure is run again (its
# group's shared transaction first falls back to one per request), at most this many times.
TRANSIENT_RETRIES = 3


@dataclass(eq=False)
class WriteJob:
    """One request's calls, and the future its per-call statuses arrive in.

    ``waiter``, when set, is the asyncio future of the request awaiting it: the writer resolves the
    waiters of a whole group with one wake-up of their event loop (not one per request).
    """

    account_id: int
    country: str
    calls: Sequence[Call]
    origin: str
    now: int
    future: Future[list[str]] = field(default_factory=Future)
    waiter: asyncio.Future[list[str]] | None = None


class _TurnLock:
    """Turns, taken in order, for the writers of every process using one SQLite file.

    Two ``flock``s: the turn itself (``<database>.writer-lock``) and a gate in front of it
    (``<database>.writer-gate``). A writer passes the gate, waits for the turn, and lets go of the
    gate the moment it has the turn; so while it commits, the next writer waits for the turn
    holding the gate, and the writer that just finished cannot take the turn again before it. A
    bare ``flock`` has no order: a writer that released it and asked again at once often got it back
    while the other process's requests waited.
    """

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        # The file's real path: processes that name it through a symlink still share the locks.
        real = os.path.realpath(database) if database and database != ":memory:" else None
        self.path = f"{real}.writer-lock" if real else None
        self.gate_path = f"{real}.writer-gate" if real else None
        self._fds: tuple[int, int] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        if self.path is None or self.gate_path is None:
            yield
            return
        if self._fds is None:
            self._fds = (_open_lock(self.gate_path), _open_lock(self.path))
        gate, turn = self._fds
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None


def _open_lock(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


class GroupCommitWriter:
    """One thread that commits the calls of all waiting requests in one transaction."""

    def __init__(
        self, engine: Engine, *, max_group_calls: int = MAX_GROUP_CALLS, idle_seconds: float = IDLE_SECONDS
    ) -> None:
        # Weak: the registry below is keyed by the engine, and a strong reference would keep it alive.
        self._engine = weakref.ref(engine)
        self._turn = _TurnLock(engine)
        self.max_group_calls = max_group_calls
        self.idle_seconds = idle_seconds
        self._pending: deque[WriteJob] = deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.groups = 0  # committed transactions (group or fallback): for tests and the benchmark
        self.jobs = 0

    def submit(self, job: WriteJob) -> Future[list[str]]:
        """Queue ``job``; its future gets the statuses once they are committed, or the error."""
        with self._wakeup:
            if self._closed:
                raise RuntimeError("the writer is closed")
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pbx-cdr-writer", daemon=True)
                self._thread.start()
            self._wakeup.notify()
        return job.future

    async def upsert(
        self, account_id: int, country: str, calls: Sequence[Call], *, origin: str, now: int
    ) -> list[str]:
        """:func:`upsert_calls` for one request, committed together with whatever else is waiting."""
        waiter: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        job = WriteJob(account_id, country, calls, origin, now, waiter=waiter)
        self.submit(job)
        try:
            return await waiter
        except asyncio.CancelledError:
            job.future.cancel()  # not yet taken: never written; already taken: committed anyway
            raise

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the thread."""
        with self._wakeup:
            self._closed = True
            thread = self._thread
            self._wakeup.notify()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                if not self._pending and not self._closed:
                    self._wakeup.wait(self.idle_seconds)
                if not self._pending:
                    self._thread = None  # the next submit starts a fresh thread
                    self._turn.close()
                    return
            # The group is taken once the turn is ours: what arrived while another process's
            # writer held it joins this transaction instead of waiting for the next one.
            with self._turn.held():
                with self._wakeup:
                    group = self._take()
                outcomes = self._commit(group)
            _settle(outcomes)  # after the turn: the next writer starts meanwhile

    def _take(self) -> list[WriteJob]:
        """The waiting jobs, oldest first, up to the group's size; cancelled ones dropped."""
        group: list[WriteJob] = []
        size = 0
        while self._pending:
            job = self._pending[0]
            if group and size + len(job.calls) > self.max_group_calls:
                break
            self._pending.popleft()
            if job.future.set_running_or_notify_cancel():
                group.append(job)
                size += len(job.calls)
        return group

    def _commit(self, group: list[WriteJob]) -> list[_Outcome]:
        """Write ``group`` in one transaction (the caller holds the turn): each job's outcome."""
        engine = self._engine()
        if engine is None:  # nobody can be waiting on a disposed app's engine, but be exact
            return [(job, None, ServiceUnavailable()) for job in group]
        if not group:
            return []
        try:
            with db.write(engine) as conn:
                results = apply_jobs(conn, group)
        except ServiceUnavailable as exc:
            return [(job, None, exc) for job in group]
        except BaseException as exc:
            if len(group) == 1 and not db.is_transient(exc):
                return [(group[0], None, exc)]
            # The shared transaction is gone: each request on its own (and again while the database
            # refuses it only for now).
            return [self._commit_alone(engine, job) for job in group]
        self.groups += 1
        self.jobs += len(group)
        return [(job, statuses, None) for job, statuses in zip(group, results, strict=True)]

    def _commit_alone(self, engine: Engine, job: WriteJob) -> _Outcome:
        """``job`` in a transaction of its own; tried again while the database refuses it only for now."""
        retries = 0
        while True:
            try:
                with db.write(engine) as conn:
                    statuses = apply_jobs(conn, [job])[0]
            except BaseException as exc:
                if retries < TRANSIENT_RETRIES and db.is_transient(exc):
                    retries += 1
                    continue
                return (job, None, exc)
            self.groups += 1
            self.jobs += 1
            return (job, statuses, None)


_Outcome = tuple[WriteJob, list[str] | None, BaseException | None]


def _settle(outcomes: list[_Outcome]) -> None:
    """Complete each job's future, then wake each event loop with waiters once for all of them."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        job, statuses, error = outcome
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(statuses or [])
        if job.waiter is not None:
            by_loop.setdefault(job.waiter.get_loop(), []).append(outcome)
    for loop, waiting in by_loop.items():
        with suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_wake, waiting)


def _wake(outcomes: list[_Outcome]) -> None:
    """In the waiters' event loop: hand each request its statuses or its error."""
    for job, statuses, error in outcomes:
        waiter = job.waiter
        if waiter is None or waiter.done():  # cancelled meanwhile (the client went away)
            continue
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(statuses or [])


def apply_jobs(conn: Connection, jobs: Sequence[WriteJob]) -> list[list[str]]:
    """Write every job in ``conn``'s transaction; the statuses of each, as if applied in order.

    Jobs are applied in rounds. A round merges, per account (and origin and ``now``), every job
    whose uuids no earlier job of this pass names; a job that shares a uuid with an earlier one
    waits for a later round, so it sees that job's row exactly as it would have one at a time.
    The hour counts and data versions the rounds change are written once, after the last round,
    in one order (:class:`~pbx_cdr.db.queries.calls.AccountChanges`).
    """
    results: list[list[str] | None] = [None] * len(jobs)
    owed = AccountChanges()  # applied once, after every round: one lock order for all writers
    waiting = list(range(len(jobs)))
    while waiting:
        named: dict[int, set[str]] = {}
        units: dict[tuple[int, str, str, int], list[int]] = {}
        later: list[int] = []
        for index in waiting:
            job = jobs[index]
            seen = named.setdefault(job.account_id, set())
            uuids = [c.uuid for c in job.calls]
            if seen.isdisjoint(uuids):
                units.setdefault((job.account_id, job.country, job.origin, job.now), []).append(index)
            else:
                later.append(index)
            seen.update(uuids)
        for (account_id, country, origin, now), members in units.items():
            merged = [c for index in members for c in jobs[index].calls]
            statuses = upsert_calls(conn, account_id, country, merged, origin=origin, now=now, owed=owed)
            start = 0
            for index in members:
                end = start + len(jobs[index].calls)
                results[index] = statuses[start:end]
                start = end
        waiting = later
    owed.apply(conn)
    return [r if r is not None else [] for r in results]


_writers: weakref.WeakKeyDictionary[Engine, GroupCommitWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()
_writers_pid = os.getpid()


def writer_for(engine: Engine) -> GroupCommitWriter:
    """This process's writer for ``engine`` (made on first use)."""
    global _writers_pid
    with _writers_lock:
        if _writers_pid != os.getpid():  # a forked child: the parent's threads did not come along
            _writers.clear()
            _writers_pid = os.getpid()
        writer = _writers.get(engine)
        if writer is None:
            writer = _writers[engine] = GroupCommitWriter(engine)
        return writer
