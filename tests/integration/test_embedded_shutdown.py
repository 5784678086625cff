"""SIGTERM to ``featurelens up`` in the middle of indexing or of searches: what is in flight
finishes (search calls the encoder and sae over the host's own port, which stays open while it
drains), new calls are refused, and the host then exits cleanly (issue 8, defect 10)."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurelens.corpus import read_corpus
from featurelens.embedding.backends import load_backend
from featurelens.kit.interceptor import SHUTTING_DOWN
from featurelens.kit.launcher import RunningHost, start_embedded
from featurelens.sae import SaeConfig, SparseAutoencoder, save_sae
from featurelens.sae.checkpoint import make_sae_id
from featurelens.v1 import common_pb2, search_pb2, search_pb2_grpc

DATA_DIR = Path(
    os.environ.get("FEATURELENS_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data")
)
ASTRO = DATA_DIR / "arxiv_astro.jsonl.gz"
DOCS = 1200
BATCH = 50


def wait_until_not_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
            return
        time.sleep(0.02)
    raise AssertionError("health never turned NOT_SERVING after SIGTERM")


def requests(documents: list[common_pb2.Document]) -> list[search_pb2.IndexDocumentsRequest]:
    messages = [
        search_pb2.IndexDocumentsRequest(setup=search_pb2.IndexSetup(corpus="drain", batch_size=BATCH))
    ]
    for start in range(0, len(documents), BATCH):
        batch = search_pb2.DocumentBatch(documents=documents[start : start + BATCH])
        messages.append(search_pb2.IndexDocumentsRequest(documents=batch))
    return messages


def astro_documents(count: int) -> list[common_pb2.Document]:
    if not ASTRO.is_file():
        pytest.skip(f"real corpus not found at {ASTRO} (set FEATURELENS_DATA_DIR)")
    return [
        common_pb2.Document(id=r.id, title=r.title, text=r.text)
        for r in itertools.islice(read_corpus(ASTRO), count)
    ]


@contextmanager
def embedded_host(tmp_path: Path) -> Iterator[RunningHost]:
    """``featurelens up`` with encoder (wordllama), sae (a small default SAE) and search."""
    data = tmp_path / "data"
    models = data / "sae" / "models"
    wordllama = load_backend("wordllama")
    sae = SparseAutoencoder(SaeConfig(d_in=wordllama.dim, num_latents=256, k=8), seed=0)
    sae_id = make_sae_id(sae.cfg, None, "drain")
    save_sae(sae, models / sae_id, embedding_model=wordllama.model_id, data_fingerprint="drain")
    (models / "default").write_text(sae_id + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FEATURELENS_SEARCH_GRACE_PERIOD_S": "120"}
    with start_embedded(
        data_dir=data,
        services=["encoder", "sae", "search"],
        models=["wordllama"],
        env=env,
        log_path=tmp_path / "host.log",
        log_format="json",
    ) as host:
        yield host


@pytest.mark.slow
def test_sigterm_while_indexing_in_featurelens_up_lets_the_stream_index_every_document(
    tmp_path: Path,
) -> None:
    documents = astro_documents(DOCS)
    log = tmp_path / "host.log"

    with embedded_host(tmp_path) as host:
        with grpc.insecure_channel(host.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            stream = stub.IndexDocuments(iter(requests(documents)), metadata=(("x-request-id", "req-index"),))
            first = next(stream)
            host.process.send_signal(signal.SIGTERM)
            wait_until_not_serving(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Search(search_pb2.SearchRequest(corpus="drain", text="galaxies", top_k=1), timeout=30)
            rest = list(stream)
        exit_code = host.process.wait(120)

    last = rest[-1] if rest else first
    assert first.indexed < DOCS, "the stream ended before SIGTERM; nothing was drained"
    assert last.indexed == DOCS, log.read_text()
    assert last.failed == 0
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert exit_code == 0
    assert "stopping: draining" in log.read_text()


@pytest.mark.slow
def test_sigterm_during_steered_searches_in_featurelens_up_lets_the_searches_in_flight_finish(
    tmp_path: Path,
) -> None:
    searches = 64
    with embedded_host(tmp_path) as host:
        with grpc.insecure_channel(host.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            list(stub.IndexDocuments(iter(requests(astro_documents(300))), timeout=300))
            # Text queries, hybrid and steered: each Search calls the encoder (Embed) and the sae
            # (Steer) back over the host's own port.
            request = search_pb2.SearchRequest(
                corpus="drain",
                text="dark matter halo profiles",
                mode=search_pb2.SEARCH_MODE_HYBRID,
                interventions=[common_pb2.Intervention(feature=1, weight=0.5)],
                with_rank_changes=True,
            )
            finished_at: dict[int, float] = {}
            futures = []
            for number in range(searches):
                future = stub.Search.future(request, timeout=60, metadata=(("x-request-id", f"s{number}"),))
                future.add_done_callback(lambda _, n=number: finished_at.setdefault(n, time.monotonic()))
                futures.append(future)
            signalled_at = time.monotonic()
            host.process.send_signal(signal.SIGTERM)
            outcomes = []
            for number, future in enumerate(futures):
                try:
                    future.result()
                    outcomes.append((grpc.StatusCode.OK, "", finished_at[number]))
                except grpc.RpcError as error:
                    outcomes.append((error.code(), error.details(), finished_at[number]))
        exit_code = host.process.wait(120)

    refused = [(code, details) for code, details, _ in outcomes if code != grpc.StatusCode.OK]
    served_after_sigterm = [
        moment for code, _, moment in outcomes if code == grpc.StatusCode.OK and moment > signalled_at
    ]
    # Every search is either served in full or refused at the door; none breaks half-way because
    # the encoder or sae it calls has gone (the defect: "the sae service at ... is unavailable").
    for code, details in refused:
        assert (code, details) == (grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
    assert served_after_sigterm, "no search was still in flight when SIGTERM came"
    assert exit_code == 0
