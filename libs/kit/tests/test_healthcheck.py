"""`python -m featurelens.kit.healthcheck`, the command docker compose runs as a health check."""

from __future__ import annotations

import asyncio
import socket
import sys

from featurelens.kit import GrpcServer


async def healthcheck_exit_code(port: int) -> int:
    # A subprocess, so that the server in this event loop keeps answering while it runs.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "featurelens.kit.healthcheck",
        "--port",
        str(port),
        "--timeout",
        "5",
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_healthcheck_exits_0_against_a_serving_server(server: GrpcServer) -> None:
    assert await healthcheck_exit_code(server.port) == 0


async def test_healthcheck_exits_1_while_the_server_is_still_starting(started_server: GrpcServer) -> None:
    assert await healthcheck_exit_code(started_server.port) == 1


async def test_healthcheck_exits_1_against_a_closed_port() -> None:
    assert await healthcheck_exit_code(closed_port()) == 1
