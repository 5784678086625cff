"""Exit 0 when a featurelens server reports SERVING (for docker compose health checks).

python -m featurelens.kit.healthcheck --port 50051 [--host 127.0.0.1] [--service NAME]
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(host: str, port: int, service: str = "", timeout_s: float = 3.0) -> bool:
    """True when the server at host:port reports SERVING for the service ("" = overall)."""
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health check for featurelens services.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", default="", help="service name; empty for the whole server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    ns = parser.parse_args(argv)
    healthy = check(ns.host, ns.port, ns.service, ns.timeout)
    sys.stderr.write("SERVING\n" if healthy else "NOT SERVING\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
