"""Exit 0 when a featurelens server reports SERVING (for docker compose health checks).

python -m featurelens.kit.healthcheck --port 50051 [--host 127.0.0.1] [--service NAME]
    [--tls-ca CA.pem [--tls-server-name NAME] [--tls-cert CERT.pem --tls-key KEY.pem]]
    [--api-key-file KEY]

A server that serves TLS is checked over TLS (``--tls-ca``; ``--tls-server-name`` when its
certificate does not name the host checked, and a client certificate under mutual TLS); a key is
needed only when the server closed its health checks (``OPEN_HEALTH=false``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurelens.kit.auth import PeerSecurity, SecurityConfigError, read_key_file, read_pem


def check(
    host: str,
    port: int,
    service: str = "",
    timeout_s: float = 3.0,
    *,
    security: PeerSecurity | None = None,
    server_name: str | None = None,
) -> bool:
    """True when the server at host:port reports SERVING for the service ("" = overall)."""
    security = security if security is not None else PeerSecurity()
    credentials = security.channel_credentials()
    target = f"{host}:{port}"
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, credentials, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=timeout_s,
                metadata=security.metadata(),
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health check for featurelens services.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", default="", help="service name; empty for the whole server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    parser.add_argument("--tls-ca", type=Path, help="PEM CA bundle: check over TLS, verified by it")
    parser.add_argument("--tls-server-name", help="the name the server's certificate holds, if not --host")
    parser.add_argument("--tls-cert", type=Path, help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--api-key-file", type=Path, help="file of the key to send (closed health checks)")
    ns = parser.parse_args(argv)
    try:
        security = PeerSecurity(
            api_key=read_key_file(ns.api_key_file, "--api-key-file") if ns.api_key_file else None,
            tls=ns.tls_ca is not None,
            ca=read_pem(ns.tls_ca, "--tls-ca") if ns.tls_ca else None,
            cert_chain=read_pem(ns.tls_cert, "--tls-cert") if ns.tls_cert else None,
            private_key=read_pem(ns.tls_key, "--tls-key") if ns.tls_key else None,
        )
    except SecurityConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    healthy = check(
        ns.host, ns.port, ns.service, ns.timeout, security=security, server_name=ns.tls_server_name
    )
    sys.stderr.write("SERVING\n" if healthy else "NOT SERVING\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
