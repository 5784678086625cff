"""Start the embedded host as a child process and wait until it serves: the one way tools do it.

    with start_embedded(data_dir=work, services=["encoder"], models=["wordllama"],
                        log_path=work / "server.log") as host:
        client = FeaturelensClient(host.address)
        ...

The demo and every benchmark start their server with ``start_embedded``. A child process keeps
the server off the caller's GIL (benchmarks would otherwise time the client and the server
together), gives the server its own log file, and is stopped the way operators stop a service:
SIGTERM, which drains in-flight calls.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from featurelens.kit.embedded import connect_host, free_port
from featurelens.kit.healthcheck import check

#: How often the child's health is asked while it starts, in seconds.
_POLL_S = 0.2
#: Lines of the child's log quoted in a start failure.
_TAIL_LINES = 15


class HostStartError(RuntimeError):
    """The embedded host exited or did not report SERVING in time; the message says where to look."""


@dataclass(frozen=True)
class RunningHost:
    """An embedded host serving in a child process."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def address(self) -> str:
        """host:port to connect to."""
        return f"{connect_host(self.host)}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


def embedded_command(
    *,
    host: str,
    port: int,
    data_dir: Path,
    services: Sequence[str] = (),
    models: Sequence[str] = (),
    log_level: str = "INFO",
    log_format: str = "auto",
    api_keys_file: Path | None = None,
) -> list[str]:
    """The command line of ``python -m featurelens.kit.embedded`` with these options."""
    command = [sys.executable, "-m", "featurelens.kit.embedded", "--host", host, "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--log-level", log_level, "--log-format", log_format]
    if services:
        command += ["--services", ",".join(services)]
    if models:
        command += ["--models", ",".join(models)]
    if api_keys_file is not None:
        command += ["--api-keys-file", str(api_keys_file)]
    return command


@contextmanager
def start_embedded(
    *,
    data_dir: Path,
    services: Sequence[str] = (),
    models: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    log_level: str = "INFO",
    log_format: str = "auto",
    timeout_s: float = 300.0,
    stop_timeout_s: float = 60.0,
    api_keys_file: Path | None = None,
) -> Iterator[RunningHost]:
    """The embedded host in a child process, SERVING, until the block ends (then SIGTERM).

    ``services``: the services to host (empty: every installed one); ``models``: the encoder's
    backends (empty: its setting). ``env`` is the child's whole environment (None: this
    process's), which is where each service's ``FEATURELENS_<SERVICE>_*`` settings go.
    ``log_path`` receives the child's output (None: it shares this process's). Port 0 picks a
    free one. ``api_keys_file`` makes the host require those keys (its health stays open). Raises
    ``HostStartError`` naming the exit code and the log when the child exits
    before it is ready, or when ``timeout_s`` passes first.
    """
    if port == 0:
        port = free_port(host)
    command = embedded_command(
        host=host,
        port=port,
        data_dir=data_dir,
        services=services,
        models=models,
        log_level=log_level,
        log_format=log_format,
        api_keys_file=api_keys_file,
    )
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=None if env is None else dict(env)
            )
    else:
        process = subprocess.Popen(command, env=None if env is None else dict(env))
    running = RunningHost(host, port, process, log_path)
    try:
        _wait_until_serving(running, timeout_s)
        yield running
    finally:
        _stop(process, stop_timeout_s)


def _wait_until_serving(running: RunningHost, timeout_s: float) -> None:
    # The overall ("") health status turns SERVING only once every hosted service has started.
    deadline = time.monotonic() + timeout_s
    where = connect_host(running.host)
    while not check(where, running.port, timeout_s=1.0):
        code = running.process.poll()
        if code is not None:
            raise HostStartError(
                f"the embedded host exited with code {code} before it was ready{_see(running.log_path)}"
            )
        if time.monotonic() > deadline:
            raise HostStartError(
                f"the embedded host did not report SERVING at {running.address} within "
                f"{timeout_s:g} s{_see(running.log_path)}"
            )
        time.sleep(_POLL_S)


def _see(log_path: Path | None) -> str:
    if log_path is None:
        return "; see its output above"
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"; see {log_path}"
    tail = "\n".join(lines[-_TAIL_LINES:])
    return f"; see {log_path}, which ends:\n{tail}" if tail else f"; see {log_path} (empty)"


def _stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (the host drains in-flight calls and stops), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
