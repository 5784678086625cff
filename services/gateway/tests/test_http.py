"""The gateway's HTTP surface with no service behind it: the OpenAPI document, the explorer's files
and the client-side routing fallback, request ids, the body limit, malformed requests (always a
4xx, never a 500) and services that cannot be reached (503). A real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from gateway_testing import EXPLORER_FILES, write_explorer
from search_testing import closed_address

from featurelens.services.gateway import routes as api
from featurelens.services.gateway.app import create_app
from featurelens.services.gateway.server import Gateway, bind
from featurelens.services.gateway.settings import GatewaySettings

MAX_BODY = 4096


@pytest.fixture(scope="module")
def lonely(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A gateway whose services are all down, serving a stand-in explorer; an HTTP client of it."""
    down = closed_address()
    settings = GatewaySettings(
        port=0,
        encoder_address=down,
        sae_address=down,
        search_address=down,
        labelling_address=down,
        family_address=down,
        call_timeout_s=5.0,
        health_timeout_s=1.0,
        static_dir=write_explorer(tmp_path_factory.mktemp("web")),
        max_body_bytes=MAX_BODY,
        grace_period_s=1.0,
    )
    loop = asyncio.new_event_loop()
    gateway = Gateway(settings, bind("127.0.0.1", 0))
    started = threading.Event()

    async def serve() -> None:
        gateway.start()
        await gateway.wait_started()
        started.set()
        await gateway.server_task()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=30.0) as client:
            yield client
    finally:
        loop.call_soon_threadsafe(gateway.server.stop)
        thread.join(30)
        loop.close()


# -- the OpenAPI document -------------------------------------------------------------------------


def test_the_openapi_document_lists_every_route() -> None:
    document = create_app(GatewaySettings(static_dir=None)).openapi()
    routes = {
        (route.path, method)
        for route in api.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }

    listed = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    assert routes == listed
    assert len(listed) == 13
    assert document["info"]["title"] == "featurelens gateway"
    assert "ErrorBody" in document["components"]["schemas"]


def test_the_openapi_document_and_the_docs_are_served(lonely: httpx.Client) -> None:
    document = lonely.get("/openapi.json")
    docs = lonely.get("/api/docs")

    assert document.status_code == 200
    assert "/api/v1/search" in document.json()["paths"]
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


# -- the explorer's files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/", "index.html", "text/html"),
        ("/app.js", "app.js", "text/javascript"),
        ("/style.css", "style.css", "text/css"),
    ],
)
def test_the_explorers_files_are_served_with_their_content_types(
    lonely: httpx.Client, path: str, name: str, content_type: str
) -> None:
    response = lonely.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.text == EXPLORER_FILES[name]
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/features/12", "/saes/sae-1/families/f2-p0", "/search?q=halos"])
def test_an_explorer_page_path_loads_the_explorer(lonely: httpx.Client, path: str) -> None:
    response = lonely.get(path)

    assert response.status_code == 200
    assert response.text == EXPLORER_FILES["index.html"]


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v2/saes", "/api"])
def test_an_unknown_api_path_is_a_json_404_not_the_explorer(lonely: httpx.Client, path: str) -> None:
    response = lonely.get(path)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "NOT_FOUND"
    assert error["request_id"] == response.headers["x-request-id"]


def test_a_missing_file_with_a_method_other_than_get_is_not_the_explorer(lonely: httpx.Client) -> None:
    response = lonely.post("/features/12", json={})

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "UNIMPLEMENTED"


def test_without_a_static_folder_nothing_is_served_at_the_root(tmp_path: Path) -> None:
    app = create_app(GatewaySettings(static_dir=None))

    assert not [route for route in app.routes if getattr(route, "name", "") == "explorer"]


# -- request ids ----------------------------------------------------------------------------------


def test_a_callers_request_id_comes_back_on_the_response_and_in_the_error(lonely: httpx.Client) -> None:
    response = lonely.get("/api/v1/corpora", headers={"X-Request-Id": "trace-7f3a"})

    assert response.headers["x-request-id"] == "trace-7f3a"
    assert response.json()["error"]["request_id"] == "trace-7f3a"


@pytest.mark.parametrize("given", ["", "with space", "x" * 129, "tab\there"])
def test_an_unusable_request_id_is_replaced_by_a_fresh_one(lonely: httpx.Client, given: str) -> None:
    response = lonely.get("/app.js", headers={"X-Request-Id": given})

    assert response.headers["x-request-id"] not in ("", given)
    assert 0 < len(response.headers["x-request-id"]) <= 128


def test_each_request_without_an_id_gets_its_own(lonely: httpx.Client) -> None:
    ids = {lonely.get("/app.js").headers["x-request-id"] for _ in range(3)}

    assert len(ids) == 3


# -- services down --------------------------------------------------------------------------------


def test_health_answers_and_names_every_service_unavailable(lonely: httpx.Client) -> None:
    response = lonely.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {
        "ready": False,
        "services": dict.fromkeys(["encoder", "sae", "search", "labelling", "family"], "UNAVAILABLE"),
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/corpora", None),
        ("GET", "/api/v1/saes/sae-1/features/3", None),
        ("POST", "/api/v1/search", {"corpus": "astro", "text": "halos"}),
    ],
)
def test_a_service_that_cannot_be_reached_is_a_503(
    lonely: httpx.Client, method: str, path: str, body: object
) -> None:
    response = lonely.request(method, path, json=body)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "UNAVAILABLE"


# -- malformed requests: always a 4xx in the one JSON shape ---------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"not json at all",
        b"[]",
        b"null",
        b'"a string"',
        b'{"corpus": 5, "text": ["a"]}',
        b'{"corpus": "astro"}',
        b'{"corpus": "astro", "text": "x", "top_k": -1}',
        b'{"corpus": "astro", "text": "x", "top_k": 1e400}',
        b'{"corpus": "astro", "text": "x", "mode": "psychic"}',
        b'{"corpus": "astro", "text": "x", "interventions": {"feature": 1}}',
        b'{"corpus": "astro", "text": "x", "interventions": [{"feature": "one", "weight": 1}]}',
        b'{"corpus": "astro", "text": "x", "surprise": true}',
        '{"corpus": "\u00e9\\ud800", "text": 1}'.encode(),
        b"\xff\xfe\x00garbage",
    ],
)
def test_a_malformed_search_body_is_a_400_in_the_json_shape(lonely: httpx.Client, content: bytes) -> None:
    response = lonely.post("/api/v1/search", content=content, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["request_id"] == response.headers["x-request-id"]


def test_a_body_over_the_limit_is_a_413_by_its_length(lonely: httpx.Client) -> None:
    body = json.dumps({"corpus": "astro", "text": "x" * (MAX_BODY * 2)})

    response = lonely.post("/api/v1/search", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


def test_a_chunked_body_over_the_limit_is_a_413_as_it_arrives(lonely: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"corpus": "astro", "text": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}'

    response = lonely.post("/api/v1/search", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/saes/sae-1/features/not-a-number",
        "/api/v1/saes/sae-1/features/99999999999999999999999",
        "/api/v1/saes/sae-1/labels?order=alphabetical",
        "/api/v1/saes/sae-1/labels?page_size=0",
        "/api/v1/saes/sae-1/features/3/activations?sample=0",
        "/api/v1/saes/sae-1/labels/search",
    ],
)
def test_a_malformed_query_is_a_400_before_any_service_is_called(lonely: httpx.Client, path: str) -> None:
    response = lonely.get(path)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_a_wrong_method_on_an_api_path_is_a_405_in_the_json_shape(lonely: httpx.Client) -> None:
    response = lonely.delete("/api/v1/search")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "UNIMPLEMENTED"
