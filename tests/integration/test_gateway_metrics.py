"""The gateway's /metrics: HTTP requests by method, route template (never the raw path) and status,
with no service behind it (every call to them fails UNAVAILABLE, answered 503)."""

from __future__ import annotations

import socket

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from featurelens.services.gateway.app import create_app
from featurelens.services.gateway.settings import GatewaySettings


def closed_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def http_requests(text: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "featurelens_http_requests_total" and sample.labels == {
                "method": "GET",
                "route": route,
                "status": status,
            }:
                return float(sample.value)
    return 0.0


def test_metrics_count_requests_by_route_template_and_status() -> None:
    address = closed_address()
    settings = GatewaySettings(
        static_dir=None,
        encoder_address=address,
        sae_address=address,
        search_address=address,
        labelling_address=address,
        family_address=address,
        call_timeout_s=2.0,
    )
    route = "/api/v1/saes/{sae_id}"
    with TestClient(create_app(settings)) as client:
        before = http_requests(client.get("/metrics").text, route, "503")
        refused = client.get("/api/v1/saes/sae-that-names-a-document-7")
        unknown = client.get("/no/such/page")
        scraped = client.get("/metrics")

    assert refused.status_code == 503
    assert unknown.status_code == 404
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert http_requests(scraped.text, route, "503") - before == 1
    assert http_requests(scraped.text, "unmatched", "404") >= 1
    assert "sae-that-names-a-document-7" not in scraped.text
    assert "featurelens_http_request_duration_seconds_bucket" in scraped.text


def test_the_metrics_route_is_not_in_the_openapi_document() -> None:
    with TestClient(create_app(GatewaySettings(static_dir=None))) as client:
        paths = client.get("/openapi.json").json()["paths"]

    assert "/metrics" not in paths
