"""Helpers of the fault tests: ``featurelens up`` in a child process on a data folder that
survives it, real abstracts, a random SAE, and a Redis server of the test's own.

The host runs as a child (``featurelens.kit.launcher.start_embedded``) so a test can SIGKILL it
the way a crash or the OOM killer would, then start another on the same folder.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from featurelens.corpus import Record, read_corpus
from featurelens.embedding.backends import load_backend
from featurelens.kit.embedded import free_port
from featurelens.kit.launcher import RunningHost, start_embedded
from featurelens.sae import SaeConfig, SparseAutoencoder, save_sae
from featurelens.sae.checkpoint import make_sae_id

DATA_DIR = Path(
    os.environ.get("FEATURELENS_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data")
)
ASTRO = DATA_DIR / "arxiv_astro.jsonl.gz"
NUM_LATENTS = 64
K = 4


def astro_records(count: int) -> list[Record]:
    """The first ``count`` real astro-ph abstracts (skips the test without the data)."""
    if not ASTRO.is_file():
        pytest.skip(f"real corpus not found at {ASTRO} (set FEATURELENS_DATA_DIR)")
    return list(itertools.islice(read_corpus(ASTRO), count))


def models_dir(data: Path) -> Path:
    """Where the embedded host's sae service keeps its checkpoints."""
    return data / "sae" / "models"


def prepare_data(data: Path) -> str:
    """A data folder whose sae service has a random default SAE over wordllama; its id."""
    wordllama = load_backend("wordllama")
    sae = SparseAutoencoder(SaeConfig(d_in=wordllama.dim, num_latents=NUM_LATENTS, k=K), seed=0)
    sae_id = make_sae_id(sae.cfg, None, "fault")
    models = models_dir(data)
    save_sae(sae, models / sae_id, embedding_model=wordllama.model_id, data_fingerprint="fault")
    (models / "default").write_text(sae_id + "\n")
    return sae_id


@contextmanager
def host(
    data: Path,
    log: Path,
    services: Sequence[str] = ("encoder", "sae", "search"),
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningHost]:
    """``featurelens up`` with ``services`` (wordllama as the encoder) on ``data``; SIGTERM at the end
    unless the test killed it. ``log`` gets the host's output (appended to the runs before it)."""
    child_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    run_log = log.with_suffix(f".{int(time.monotonic() * 1000)}.log")
    with start_embedded(
        data_dir=data,
        services=services,
        models=["wordllama"],
        env=child_env,
        log_path=run_log,
        log_format="json",
    ) as running:
        yield running


def kill9(running: RunningHost) -> None:
    """SIGKILL the host and reap it: no handler runs, nothing is flushed or closed."""
    running.process.send_signal(signal.SIGKILL)
    assert running.process.wait(30) == -signal.SIGKILL


def eventually(condition, what: str, timeout_s: float = 60.0, every_s: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns something truthy (which is returned)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(every_s)


class RedisProcess:
    """A redis-server of the test's own on a free loopback port (never the shared one), which a
    test may stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed")
        self.executable = executable
        self.workdir = workdir
        self.port = free_port("127.0.0.1")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually(self._answers, f"redis-server on port {self.port} answering", 30)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait until the port refuses."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
