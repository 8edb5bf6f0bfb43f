"""Real servers for the test run: PostgreSQL 15 in a temp folder, an S3-protocol server, pbx-cdr itself.

Each is started as a process on a free port and stopped at the end; nothing is left behind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def wait_for_postgres(server: PostgresServer, timeout: float = 60.0) -> None:
    """Until the server takes connections: its port opens while it still answers "the database
    system is starting up" (longer with a benchmark's 2 GB of shared buffers)."""
    wait_for_port(server.port, timeout, proc=server.proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(server.url().replace("+psycopg", ""), connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline or server.proc.poll() is not None:
                raise
            time.sleep(0.05)


def pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql-15)")


@dataclass
class PostgresServer:
    port: int
    user: str
    proc: subprocess.Popen[bytes]
    argv: list[str] = field(default_factory=list)
    root: Path | None = None
    preexec: Callable[[], object] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self, fast: bool = True) -> None:
        """Stop the server (fast shutdown: connected sessions are cut, as in an outage)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if fast else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start(self) -> None:
        """Start it again on the same data folder and port."""
        assert self.root is not None
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "server.log", "ab"),  # noqa: SIM115
            preexec_fn=self.preexec,
            cwd=self.root,
        )
        wait_for_postgres(self)


def _demote(user: str) -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: run it as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return None
    for name in (user, "postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


@contextmanager
def postgres_server(settings: Mapping[str, str] | None = None) -> Iterator[PostgresServer]:
    """initdb into a temp folder, start postgres on a free port, yield, stop and remove it.

    ``settings`` add or override server settings (the benchmarks give it more memory).
    """
    bindir = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="pbx-cdr-pg-"))
    data = root / "data"
    ids = _demote("postgres")
    if ids:
        os.chown(root, *ids)

    def demote() -> None:
        assert ids is not None
        os.setgid(ids[1])
        os.setuid(ids[0])

    preexec = demote if ids else None
    user = "pbxtest"
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=preexec,
        cwd=root,
    )
    port = free_port()
    argv = [
        str(bindir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(root),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=300",
        "-c",
        "shared_buffers=128MB",
        *(arg for name, value in (settings or {}).items() for arg in ("-c", f"{name}={value}")),
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "wb"),  # noqa: SIM115
        preexec_fn=preexec,
        cwd=root,
    )
    server = PostgresServer(port=port, user=user, proc=proc, argv=argv, root=root, preexec=preexec)
    try:
        wait_for_postgres(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's standalone S3-protocol server as a process on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class PbxServer:
    base_url: str
    proc: subprocess.Popen[bytes]
    port: int


def pbx_cdr_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pbx_cdr", *args]


@contextmanager
def pbx_server(env: Mapping[str, str], *, workers: int = 1, port: int | None = None) -> Iterator[PbxServer]:
    """``pbx-cdr serve`` as a real process; SIGTERM at the end (tests may SIGKILL it themselves)."""
    port = port or free_port()
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(
        pbx_cdr_command("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"pbx-cdr serve exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("pbx-cdr serve did not come up")
            time.sleep(0.1)
        yield PbxServer(base_url=base, proc=proc, port=port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
