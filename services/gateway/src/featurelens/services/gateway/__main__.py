"""Run the gateway: ``python -m featurelens.services.gateway``.

This is the only module that reads the environment (through ``GatewaySettings``). uvicorn serves
until SIGTERM or SIGINT, then lets in-flight requests finish for up to ``grace_period_s``.
"""

from __future__ import annotations

import uvicorn

from featurelens.kit.logs import configure_logging
from featurelens.kit.redaction import register_settings_secrets
from featurelens.services.gateway.server import uvicorn_config
from featurelens.services.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level, settings.log_format)
    register_settings_secrets(settings)
    uvicorn.Server(uvicorn_config(settings)).run()


if __name__ == "__main__":
    main()
