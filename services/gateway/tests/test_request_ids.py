"""A request's id travels on: the services log the calls the gateway makes for it under that id."""

from __future__ import annotations

import logging

import httpx
import pytest
from gateway_testing import RunningGateway

from featurelens.kit.logs import RedactingFilter


def test_the_services_log_the_gateways_calls_under_the_http_requests_id(
    http: httpx.Client, gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    # The kit's filter is what puts the request id on each record (the handlers of a service have it).
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="featurelens.kit"):
        response = http.get(
            f"/api/v1/saes/{gateway.sae_id}/families/f9999-p0", headers={"X-Request-Id": "trail-0042"}
        )

    assert response.status_code == 404
    served = [r for r in caplog.records if "GetFamily" in r.getMessage()]
    assert served, [r.getMessage() for r in caplog.records]
    assert {getattr(r, "request_id", None) for r in served} == {"trail-0042"}
