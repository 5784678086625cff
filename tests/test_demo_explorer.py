"""The end of `make demo`: the explorer's URL, when it keeps serving, a busy HTTP port, and the
explorer served in front of a (here unreachable) embedded server."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_explorer_url_opens_the_search_page_on_the_demo_corpus_sae_and_query(demo: ModuleType) -> None:
    url = urlsplit(demo.explorer_url(8080, "sae-123"))

    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:8080", "/search")
    assert parse_qs(url.query) == {
        "corpus": ["astro"],
        "sae": ["sae-123"],
        "mode": ["hybrid"],
        "q": [demo.QUERY],
    }


@pytest.mark.parametrize(
    ("serve", "terminal", "expected"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_the_demo_keeps_serving_when_asked_or_at_a_terminal(
    demo: ModuleType, serve: bool, terminal: bool, expected: bool
) -> None:
    assert demo.keep_serving(serve, terminal) is expected


def test_a_busy_http_port_stops_the_demo_with_a_message_naming_it(demo: ModuleType) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]

        with pytest.raises(SystemExit, match=rf"127\.0\.0\.1:{port}.*--http-port"):
            demo.reserve_http_port(port)


def test_the_explorer_is_served_in_front_of_the_embedded_server_until_the_block_ends(
    demo: ModuleType,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there
    sock = demo.reserve_http_port(0)

    with demo.serving_explorer(down, sock) as port:
        page = httpx.get(f"http://127.0.0.1:{port}/search?q=x", timeout=10)
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=30)

    assert page.status_code == 200
    assert '<script type="module" src="/app.js">' in page.text
    assert health.json()["ready"] is False
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
