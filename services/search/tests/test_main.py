"""Settings from the environment, the server storage adapter, and the service as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from search_testing import CountingBackend, index_requests, serve_stack

from featurelens.corpus import Record
from featurelens.kit.healthcheck import check
from featurelens.services.search.__main__ import open_store
from featurelens.services.search.settings import SearchSettings
from featurelens.store import EdgeDocumentStore, QdrantServerDocumentStore
from featurelens.v1 import search_pb2


def test_settings_are_read_from_featurelens_search_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FEATURELENS_SEARCH_PORT", "6000")
    monkeypatch.setenv("FEATURELENS_SEARCH_STORAGE", "server")
    monkeypatch.setenv("FEATURELENS_SEARCH_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("FEATURELENS_SEARCH_QDRANT_API_KEY", "s3cret")
    monkeypatch.setenv("FEATURELENS_SEARCH_CORPUS_ROOTS", f'["{tmp_path}"]')
    monkeypatch.setenv("FEATURELENS_SEARCH_SAE_ADDRESS", "sae:50052")

    settings = SearchSettings()

    assert settings.port == 6000
    assert settings.storage == "server"
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.qdrant_api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.corpus_roots == [tmp_path]
    assert settings.sae_address == "sae:50052"
    assert (settings.encoder_address, settings.index_batch_size, settings.max_top_k) == (
        "127.0.0.1:50051",
        256,
        1000,
    )


def test_the_edge_storage_opens_in_the_configured_folder(tmp_path: Path) -> None:
    store = open_store(SearchSettings(storage="edge", edge_path=tmp_path / "qdrant"))
    try:
        assert isinstance(store, EdgeDocumentStore)
        assert store.path == tmp_path / "qdrant"
    finally:
        store.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
async def test_the_service_indexes_and_searches_through_the_qdrant_server_adapter(
    backend: CountingBackend, models_dir: Path, tmp_path: Path, records: list[Record]
) -> None:
    # qdrant-client's local mode speaks the client API the server adapter uses.
    def server_store() -> QdrantServerDocumentStore:
        return QdrantServerDocumentStore(QdrantClient(":memory:"))

    async with serve_stack(backend, models_dir, tmp_path / "unused", open_store=server_store) as stack:
        responses = await stack.index(index_requests(records[:200], corpus="served"))
        found = await stack.stub.Search(
            search_pb2.SearchRequest(
                corpus="served", text="galaxy clusters", mode=search_pb2.SEARCH_MODE_HYBRID, with_text=True
            )
        )

    assert responses[-1].indexed == 200
    assert len(found.hits) == 10
    assert sum("cluster" in h.document.text.lower() for h in found.hits) >= 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_service_runs_as_a_process_reports_serving_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {
        "FEATURELENS_SEARCH_HOST": "127.0.0.1",
        "FEATURELENS_SEARCH_PORT": str(port),
        "FEATURELENS_SEARCH_EDGE_PATH": str(tmp_path / "qdrant"),
        "FEATURELENS_SEARCH_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "featurelens.services.search"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not check("127.0.0.1", port, "featurelens.v1.SearchService", timeout_s=1.0):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the service never reported SERVING"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
