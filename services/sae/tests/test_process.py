"""The service as a process (`python -m featurelens.services.sae`): env settings, health, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from sae_testing import matrix, vectors

from featurelens.kit.healthcheck import check
from featurelens.v1 import sae_pb2, sae_pb2_grpc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_process_serves_the_models_dir_and_exits_cleanly_on_sigterm(
    models_dir: Path, sae_id: str
) -> None:
    port = free_port()
    env = os.environ | {
        "FEATURELENS_SAE_HOST": "127.0.0.1",
        "FEATURELENS_SAE_PORT": str(port),
        "FEATURELENS_SAE_MODELS_DIR": str(models_dir),
        "FEATURELENS_SAE_LOG_FORMAT": "json",
        "FEATURELENS_SAE_GRACE_PERIOD_S": "5",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "featurelens.services.sae"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not check("127.0.0.1", port, timeout_s=1.0):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the service never reported SERVING"
            time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = sae_pb2_grpc.SaeServiceStub(channel).Encode(
                sae_pb2.EncodeRequest(vectors=matrix(vectors(2))), timeout=10
            )
        assert reply.sae_id == sae_id

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0
    assert '"message": "stopped"' in stderr
