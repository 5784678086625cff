"""The container's health probe: exit 0 when the gateway answers GET /api/v1/health with 200.

    python -m featurelens.services.gateway.healthcheck --port 8080

The gateway itself is checked, not the services behind it (they have health checks of their own,
and a gateway whose services are down still answers, with 503s that say so).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request


def check(host: str, port: int, timeout: float) -> bool:
    url = f"http://{host}:{port}/api/v1/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m featurelens.services.gateway.healthcheck")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--timeout", type=float, default=4.0)
    ns = parser.parse_args()
    return 0 if check(ns.host, ns.port, ns.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
