"""The encoder as a process (`python -m featurelens.services.encoder`): health, SIGTERM drain, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from encoder_testing import abstracts
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurelens.kit.healthcheck import check
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

GRACE_PERIOD_S = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EncoderProcess:
    """The service in a child process; its JSON log lines are collected as they come."""

    def __init__(self, port: int) -> None:
        env = os.environ | {
            "FEATURELENS_ENCODER_MODELS": '["wordllama"]',
            "FEATURELENS_ENCODER_HOST": "127.0.0.1",
            "FEATURELENS_ENCODER_PORT": str(port),
            "FEATURELENS_ENCODER_LOG_LEVEL": "DEBUG",
            "FEATURELENS_ENCODER_LOG_FORMAT": "json",
            "FEATURELENS_ENCODER_GRACE_PERIOD_S": str(GRACE_PERIOD_S),
            "FEATURELENS_ENCODER_REDIS_URL": "",
            "HF_HUB_OFFLINE": "1",
        }
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "featurelens.services.encoder"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.messages: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                self.messages.put(json.loads(line)["message"])
            except (ValueError, KeyError):
                self.messages.put(line.rstrip())

    def wait_until_serving(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not check("127.0.0.1", self.port, timeout_s=1):
            if self.process.poll() is not None:
                pytest.fail(f"the encoder exited with {self.process.returncode} before serving")
            if time.monotonic() > deadline:
                pytest.fail("the encoder did not report SERVING in time")
            time.sleep(0.1)

    def wait_for_message(self, fragment: str, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the encoder never logged {fragment!r}")
            if fragment in message:
                return message


@pytest.fixture
def encoder_process() -> Iterator[EncoderProcess]:
    encoder = EncoderProcess(free_port())
    yield encoder
    if encoder.process.poll() is None:
        encoder.process.kill()
        encoder.process.wait()


async def healthcheck_exit_code(port: int) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "featurelens.kit.healthcheck",
        "--port",
        str(port),
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


async def first_refusal(stub: encoder_pb2_grpc.EncoderServiceAsyncStub) -> aio.AioRpcError:
    """Keep sending small calls until one is refused (the server stops accepting shortly after SIGTERM)."""
    for _ in range(200):
        try:
            await stub.Embed(encoder_pb2.EmbedRequest(texts=["a late call"]), timeout=5)
        except aio.AioRpcError as error:
            return error
        await asyncio.sleep(0.02)
    pytest.fail("new calls were still accepted after SIGTERM")


async def test_sigterm_finishes_the_in_flight_call_refuses_new_ones_and_exits_0(
    encoder_process: EncoderProcess,
) -> None:
    texts = abstracts(2048)
    await asyncio.to_thread(encoder_process.wait_until_serving)
    assert await healthcheck_exit_code(encoder_process.port) == 0

    async with aio.insecure_channel(f"127.0.0.1:{encoder_process.port}") as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        in_flight = asyncio.ensure_future(stub.Embed(encoder_pb2.EmbedRequest(texts=texts)))
        await asyncio.to_thread(encoder_process.wait_for_message, "2048 of 2048 texts to embed")
        encoder_process.process.send_signal(signal.SIGTERM)

        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        refused = await first_refusal(stub)
        reply = await in_flight

    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    assert reply.embeddings.count == len(texts)
    assert not in_flight.cancelled()
    exit_code = await asyncio.to_thread(encoder_process.process.wait, GRACE_PERIOD_S)
    assert exit_code == 0
