"""Every endpoint of the gateway's OpenAPI document answers random and hostile requests deliberately.

A real uvicorn gateway on loopback in front of the real services (the gateway tests' session
stack). The endpoints come from the gateway's own ``/openapi.json`` (``fuzz_http.endpoints``), so a
new route is fuzzed as soon as it is added. For each: requests drawn by Hypothesis
(``fuzz_http.cases``), and once per run the hand-picked garbage of ``fuzz_http.hand_picked``.

Every answer must be below 500, and every error must have the documented body
``{"error": {"code", "message", "request_id"}}`` (``fuzz_http.problems``); the gateway must report
every service SERVING after each endpoint's batch. The short profile runs by default (marked
``fuzz``, like the gRPC fuzz suite), the long one under ``-m slow``. The terminal summary counts
the requests by endpoint and HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from fuzz_http import (
    LONG,
    SHORT,
    TALLY,
    Endpoint,
    HttpCase,
    Known,
    Tally,
    cases,
    endpoints,
    hand_picked,
    problems,
    route_of,
)
from gateway_testing import RunningGateway
from hypothesis import given, settings
from pydantic import ValidationError

from featurelens.services.gateway import models

pytestmark = pytest.mark.fuzz

#: The endpoints, read once per session from the running gateway's OpenAPI document.
ENDPOINT_IDS = [
    "GET /api/v1/health",
    "GET /api/v1/corpora",
    "GET /api/v1/saes",
    "GET /api/v1/saes/{sae_id}",
    "GET /api/v1/saes/{sae_id}/densities",
    "GET /api/v1/saes/{sae_id}/labels",
    "GET /api/v1/saes/{sae_id}/labels/search",
    "GET /api/v1/saes/{sae_id}/features/{feature}",
    "GET /api/v1/saes/{sae_id}/features/{feature}/activations",
    "POST /api/v1/saes/{sae_id}/features/{feature}/test",
    "POST /api/v1/search",
    "GET /api/v1/saes/{sae_id}/families",
    "GET /api/v1/saes/{sae_id}/families/{family_id}",
]


@pytest.fixture(scope="session")
def fuzz_client(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="session")
def api(fuzz_client: httpx.Client) -> dict[str, Endpoint]:
    document = fuzz_client.get("/openapi.json").raise_for_status().json()
    return {endpoint.id: endpoint for endpoint in endpoints(document)}


@pytest.fixture(scope="session")
def known(gateway: RunningGateway, fuzz_client: httpx.Client) -> Known:
    sae = fuzz_client.get(f"/api/v1/saes/{gateway.sae_id}").raise_for_status().json()
    return Known(
        sae_id=gateway.sae_id,
        corpus=gateway.corpus,
        family_ids=tuple(gateway.families),
        num_latents=int(sae["config"]["num_latents"]),
    )


@pytest.fixture(scope="session")
def tally(pytestconfig: pytest.Config) -> Tally:
    return pytestconfig.stash.setdefault(TALLY, Tally())


def send(client: httpx.Client, case: HttpCase, counted_as: str, profile: str, tally: Tally) -> None:
    response = client.send(case.request(client))
    tally.add(profile, counted_as, response.status_code)
    found = problems(response)
    assert not found, f"{'; '.join(found)}\n  request: {case.describe()}"


def assert_healthy(client: httpx.Client, after: str) -> None:
    health = client.get("/api/v1/health").json()
    assert health.get("ready") is True, f"the gateway's services are not all SERVING after {after}: {health}"


def fuzz(client: httpx.Client, endpoint: Endpoint, known: Known, profile: str, tally: Tally) -> None:
    @settings(settings.get_profile(profile))
    @given(case=cases(endpoint, known))
    def requests(case: HttpCase) -> None:
        send(client, case, endpoint.id, profile, tally)

    requests()
    assert_healthy(client, after=f"fuzzing {endpoint.id}")


def test_every_route_of_the_openapi_document_is_fuzzed(api: dict[str, Endpoint]) -> None:
    assert sorted(api) == sorted(ENDPOINT_IDS)


@pytest.mark.parametrize("endpoint_id", ENDPOINT_IDS)
def test_drawn_requests_get_no_5xx_and_json_errors(
    endpoint_id: str, fuzz_client: httpx.Client, api: dict[str, Endpoint], known: Known, tally: Tally
) -> None:
    fuzz(fuzz_client, api[endpoint_id], known, SHORT, tally)


def test_hand_picked_garbage_gets_no_5xx_and_json_errors(
    fuzz_client: httpx.Client, api: dict[str, Endpoint], known: Known, tally: Tally
) -> None:
    failures = []
    routes = list(api.values())
    for case in hand_picked(known):
        try:
            send(fuzz_client, case, route_of(case, routes), "hand-picked", tally)
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)
    assert_healthy(fuzz_client, after="the hand-picked garbage")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("endpoint_id", ENDPOINT_IDS)
def test_many_drawn_requests_get_no_5xx_and_json_errors(
    endpoint_id: str, fuzz_client: httpx.Client, api: dict[str, Endpoint], known: Known, tally: Tally
) -> None:
    fuzz(fuzz_client, api[endpoint_id], known, LONG, tally)


# -- what fuzzing found, kept as plain tests ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"corpus": "c", "text": "\\ud800"}',
        b'{"corpus": "\\udfff", "text": "t"}',
        b'{"corpus": "c", "text": "t", "interventions": [{"phrase": "\\ud800x", "weight": 1}]}',
        b'{"corpus": "c", "text": "t", "filter": {"categories": ["\\udc00"]}}',
    ],
)
def test_a_lone_surrogate_in_a_search_body_is_refused_as_invalid(body: bytes) -> None:
    # FastAPI reads the body with the json module (which keeps lone surrogates), then validates it.
    with pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
        models.SearchRequest.model_validate(json.loads(body))


def test_a_lone_surrogate_in_a_text_probe_is_a_400_not_a_500(fuzz_client: httpx.Client, known: Known) -> None:
    response = fuzz_client.post(
        f"/api/v1/saes/{known.sae_id}/features/0/test",
        content=b'{"text": "\\ud800"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "lone UTF-16 surrogate" in response.json()["error"]["message"]


def test_a_blank_family_id_is_a_400_not_a_500(fuzz_client: httpx.Client, known: Known) -> None:
    response = fuzz_client.get(f"/api/v1/saes/{known.sae_id}/families/%20")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
