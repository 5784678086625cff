"""``featurelens up`` serves the gateway on its own port, prints its URL beside the gRPC address,
and stops it cleanly with the rest on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_up_serves_the_gateway_beside_the_services_until_interrupted(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("FEATURELENS_REDIS_URL", None)
    http_port = _free_port()
    command = [sys.executable, "-m", "featurelens.cli.main", "up", "--port", "0", "--models", "wordllama"]
    command += ["--http-port", str(http_port), "--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "featurelens is up at" in line, process.stderr.read() if process.stderr else line
        url = f"http://127.0.0.1:{http_port}"
        assert f"HTTP API and explorer at {url}" in line
        health = httpx.get(f"{url}/api/v1/health", timeout=30).json()
        assert health["services"]["encoder"] == "SERVING"
        assert httpx.get(f"{url}/api/v1/saes", timeout=30).json() == {"saes": []}
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == 0
    assert "featurelens stopped" in out


def test_up_with_the_http_port_taken_says_so_and_exits_1(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "featurelens.cli.main", "up", "--port", "0", "--models", "wordllama"]
        command += ["--http-port", str(port), "--data-dir", str(tmp_path / "data")]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)

    assert result.returncode == 1
    assert "--http-port" in result.stderr
