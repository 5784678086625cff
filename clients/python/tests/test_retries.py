"""Retries, timeouts and connection errors, against a real gRPC server that fails as it is told.

The scripted server answers the sae, search and health RPCs the way a test plans: the first
calls of an RPC fail with a given status (and trailing metadata), or take too long, and later
ones answer. It records every attempt with the request id and retry count it carried.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typing_extensions import override

from featurelens.client import (
    APIConnectionError,
    APITimeoutError,
    AsyncFeaturelensClient,
    Backoff,
    DeadlineExceededError,
    FeaturelensClient,
    InternalServerError,
    InvalidArgumentError,
    ResourceExhaustedError,
    SaeConfig,
    UnavailableError,
)
from featurelens.client.retries import NOT_RETRIED_RPCS, RETRIED_RPCS, rpc_path
from featurelens.v1 import common_pb2, sae_pb2, sae_pb2_grpc, search_pb2, search_pb2_grpc

FAST = Backoff(initial_s=0.001, max_s=0.004)
"""A backoff that keeps the tests quick; the waits still double."""


@dataclass(frozen=True)
class Failure:
    """What one planned attempt does instead of answering."""

    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    details: str = "the encoder service at encoder:50051 is unavailable"
    trailing: tuple[tuple[str, str], ...] = ()
    sleep_s: float = 0.0
    then_answer: bool = False


@dataclass(frozen=True)
class Attempt:
    rpc: str
    request_id: str
    retry_count: str


@dataclass
class Script:
    """The plan of the next attempts per RPC, and what the server saw."""

    plans: dict[str, deque[Failure]] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)

    def fail(self, rpc: str, times: int = 1, **failure: Any) -> None:
        self.plans.setdefault(rpc, deque()).extend([Failure(**failure)] * times)

    def of(self, rpc: str) -> list[Attempt]:
        return [attempt for attempt in self.attempts if attempt.rpc == rpc]

    def enter(self, rpc: str, context: grpc.ServicerContext) -> None:
        """Record an attempt, then fail it if the plan says so."""
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        self.attempts.append(
            Attempt(rpc, metadata.get("x-request-id", ""), metadata.get("x-retry-count", ""))
        )
        plan = self.plans.get(rpc)
        if not plan:
            return
        failure = plan.popleft()
        deadline = time.monotonic() + failure.sleep_s
        # Sleep in slices so that the worker thread is freed once the caller's deadline ends the call.
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.01)
        if failure.then_answer:
            return
        context.set_trailing_metadata(failure.trailing)
        context.abort(failure.code, failure.details)


def _sae_info(sae_id: str) -> sae_pb2.SaeInfo:
    return sae_pb2.SaeInfo(sae_id=sae_id, config=sae_pb2.SaeConfig(d_in=8, num_latents=32, k=2))


class ScriptedSae(sae_pb2_grpc.SaeServiceServicer):
    def __init__(self, server: ScriptedServer) -> None:
        self._server = server

    @override
    def GetSae(self, request: sae_pb2.GetSaeRequest, context: grpc.ServicerContext) -> sae_pb2.GetSaeResponse:
        self._server.script.enter("GetSae", context)
        return sae_pb2.GetSaeResponse(sae=_sae_info(request.sae_id))

    @override
    def ListSaes(
        self, request: sae_pb2.ListSaesRequest, context: grpc.ServicerContext
    ) -> sae_pb2.ListSaesResponse:
        self._server.script.enter("ListSaes", context)
        return sae_pb2.ListSaesResponse(saes=[_sae_info("sae-a")])

    @override
    def Train(
        self, request: sae_pb2.TrainRequest, context: grpc.ServicerContext
    ) -> Iterator[sae_pb2.TrainResponse]:
        self._server.script.enter("Train", context)
        yield sae_pb2.TrainResponse(
            progress=common_pb2.Progress(stage="done", done=1, total=1), result=_sae_info("trained")
        )


class ScriptedSearch(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, server: ScriptedServer) -> None:
        self._server = server

    @override
    def DeleteDocuments(
        self, request: search_pb2.DeleteDocumentsRequest, context: grpc.ServicerContext
    ) -> search_pb2.DeleteDocumentsResponse:
        self._server.script.enter("DeleteDocuments", context)
        return search_pb2.DeleteDocumentsResponse(deleted=len(request.doc_ids))

    @override
    def ExportActivations(
        self, request: search_pb2.ExportActivationsRequest, context: grpc.ServicerContext
    ) -> Iterator[search_pb2.ExportActivationsResponse]:
        self._server.script.enter("ExportActivations", context)
        for i in range(3):
            latents = [common_pb2.SparseVector(indices=[i], values=[1.0])]
            yield search_pb2.ExportActivationsResponse(doc_ids=[f"doc-{i}"], latents=latents)
            # A planned failure of "ExportActivations.after_first" breaks the stream mid-way.
            self._server.script.enter("ExportActivations.after_first", context)


class ScriptedHealth(health_pb2_grpc.HealthServicer):
    def __init__(self, server: ScriptedServer) -> None:
        self._server = server

    @override
    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        self._server.script.enter("Check", context)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class ScriptedServer:
    """A blocking grpc server on 127.0.0.1:0 with the scripted servicers."""

    def __init__(self) -> None:
        self.script = Script()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        sae_pb2_grpc.add_SaeServiceServicer_to_server(ScriptedSae(self), self._server)
        search_pb2_grpc.add_SearchServiceServicer_to_server(ScriptedSearch(self), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(ScriptedHealth(self), self._server)
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self) -> ScriptedServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(0).wait(10)


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def script(scripted_server: ScriptedServer) -> Script:
    scripted_server.script = Script()
    return scripted_server.script


@pytest.fixture
def client(scripted_server: ScriptedServer) -> Iterator[FeaturelensClient]:
    with FeaturelensClient(scripted_server.address, backoff=FAST, timeout_s=10) as client:
        yield client


@pytest.fixture
async def aclient(scripted_server: ScriptedServer) -> AsyncIterator[AsyncFeaturelensClient]:
    async with AsyncFeaturelensClient(scripted_server.address, backoff=FAST, timeout_s=10) as client:
        yield client


# -- which RPCs are retried -----------------------------------------------------------------------


def test_every_rpc_of_the_stubs_is_either_retried_or_tried_once() -> None:
    from featurelens.v1 import encoder_pb2, family_pb2, labelling_pb2

    descriptors = [health_pb2.DESCRIPTOR, encoder_pb2.DESCRIPTOR, sae_pb2.DESCRIPTOR, search_pb2.DESCRIPTOR]
    descriptors += [labelling_pb2.DESCRIPTOR, family_pb2.DESCRIPTOR]
    rpcs = {
        f"/{service.full_name}/{method.name}"
        for descriptor in descriptors
        for service in descriptor.services_by_name.values()
        for method in service.methods
    }

    assert RETRIED_RPCS.isdisjoint(NOT_RETRIED_RPCS)
    assert rpcs - RETRIED_RPCS - NOT_RETRIED_RPCS.keys() == set(), (
        "classify these in featurelens.client.retries"
    )
    assert RETRIED_RPCS | NOT_RETRIED_RPCS.keys() == rpcs


def test_an_rpc_name_in_neither_table_is_refused_where_a_client_names_it() -> None:
    assert rpc_path("featurelens.v1.SaeService", "GetSae") == "/featurelens.v1.SaeService/GetSae"
    with pytest.raises(ValueError, match="neither table"):
        rpc_path("featurelens.v1.SaeService", "GetSea")


# -- retries --------------------------------------------------------------------------------------


def test_a_read_that_finds_the_server_unavailable_twice_succeeds_on_the_third_attempt(
    client: FeaturelensClient, script: Script
) -> None:
    script.fail("GetSae", times=2)

    assert client.sae.get_sae("sae-a").sae_id == "sae-a"

    attempts = script.of("GetSae")
    assert [attempt.retry_count for attempt in attempts] == ["0", "1", "2"]
    assert len({attempt.request_id for attempt in attempts}) == 1, "one request id for the whole call"


async def test_the_async_client_retries_the_same_way(aclient: AsyncFeaturelensClient, script: Script) -> None:
    script.fail("GetSae", times=2)

    assert (await aclient.sae.get_sae("sae-a")).sae_id == "sae-a"

    assert [attempt.retry_count for attempt in script.of("GetSae")] == ["0", "1", "2"]


def test_a_read_that_stays_unavailable_fails_after_max_retries_with_the_calls_request_id(
    client: FeaturelensClient, script: Script
) -> None:
    script.fail("ListSaes", times=5)

    with pytest.raises(UnavailableError) as caught:
        client.sae.list_saes()

    attempts = script.of("ListSaes")
    assert len(attempts) == 3
    assert caught.value.request_id == attempts[0].request_id
    assert "is unavailable" in caught.value.details
    assert not isinstance(caught.value, APIConnectionError), "the server answered; it was not unreachable"


def test_each_call_has_its_own_request_id(client: FeaturelensClient, script: Script) -> None:
    client.sae.list_saes()
    client.sae.list_saes()

    first, second = script.of("ListSaes")
    assert first.request_id != second.request_id


def test_max_retries_zero_tries_once_and_with_options_leaves_the_original_alone(
    client: FeaturelensClient, script: Script
) -> None:
    script.fail("GetSae", times=1)
    with pytest.raises(UnavailableError):
        client.with_options(max_retries=0).sae.get_sae("sae-a")
    assert len(script.of("GetSae")) == 1

    script.fail("GetSae", times=1)
    assert client.sae.get_sae("sae-a").sae_id == "sae-a"
    assert client.max_retries == 2
    assert len(script.of("GetSae")) == 3


def test_health_checks_are_retried(client: FeaturelensClient, script: Script) -> None:
    script.fail("Check", times=2)

    assert client.health() == "SERVING"
    assert len(script.of("Check")) == 3


async def test_async_health_checks_are_retried(aclient: AsyncFeaturelensClient, script: Script) -> None:
    script.fail("Check", times=1)

    assert await aclient.health() == "SERVING"
    assert len(script.of("Check")) == 2


def test_calls_that_may_have_changed_something_are_tried_once(
    client: FeaturelensClient, script: Script
) -> None:
    script.fail("DeleteDocuments", times=1)
    script.fail("Train", times=1)

    with pytest.raises(UnavailableError):
        client.search.delete_documents("arxiv", ["doc-1"])
    with pytest.raises(UnavailableError):
        list(client.sae.train("/data/embeddings", SaeConfig(num_latents=32, k=2)))

    assert len(script.of("DeleteDocuments")) == 1
    assert len(script.of("Train")) == 1


async def test_the_async_client_tries_them_once_too(aclient: AsyncFeaturelensClient, script: Script) -> None:
    script.fail("DeleteDocuments", times=1)

    with pytest.raises(UnavailableError):
        await aclient.search.delete_documents("arxiv", ["doc-1"])
    assert len(script.of("DeleteDocuments")) == 1


def test_resource_exhausted_is_retried_only_when_the_server_says_when(
    client: FeaturelensClient, script: Script
) -> None:
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    script.fail("ListSaes", code=exhausted, details="too many texts")
    with pytest.raises(ResourceExhaustedError, match="too many texts"):
        client.sae.list_saes()
    assert len(script.of("ListSaes")) == 1

    script.fail("GetSae", code=exhausted, details="busy", trailing=(("retry-after-ms", "1"),))
    script.fail("GetSae", code=exhausted, details="busy", trailing=(("grpc-retry-pushback-ms", "2"),))
    assert client.sae.get_sae("sae-a").sae_id == "sae-a"
    assert len(script.of("GetSae")) == 3


def test_a_negative_pushback_stops_the_retries_of_an_unavailable_server(
    client: FeaturelensClient, script: Script
) -> None:
    script.fail("ListSaes", times=3, trailing=(("grpc-retry-pushback-ms", "-1"),))

    with pytest.raises(UnavailableError):
        client.sae.list_saes()
    assert len(script.of("ListSaes")) == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.INTERNAL, InternalServerError),
        (grpc.StatusCode.UNKNOWN, InternalServerError),
    ],
)
def test_other_statuses_are_not_retried(
    client: FeaturelensClient, script: Script, code: grpc.StatusCode, error: type[Exception]
) -> None:
    script.fail("GetSae", code=code, details="no")

    with pytest.raises(error):
        client.sae.get_sae("sae-a")
    assert len(script.of("GetSae")) == 1


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    """A backoff that notes each wait it hands out."""

    waits: list[float] = field(default_factory=list, compare=False)

    @override
    def delay(self, retry: int) -> float:
        wait = super().delay(retry)
        self.waits.append(wait)
        return wait


def test_the_waits_between_attempts_come_from_the_injected_backoff(
    scripted_server: ScriptedServer, script: Script
) -> None:
    backoff = RecordingBackoff(initial_s=0.002, max_s=0.005, jitter=0.0)
    script.fail("GetSae", times=3)

    with FeaturelensClient(scripted_server.address, max_retries=3, backoff=backoff) as client:
        client.sae.get_sae("sae-a")

    assert backoff.waits == [0.002, 0.004, 0.005]


def test_a_stream_of_reads_is_retried_until_its_first_response_only(
    client: FeaturelensClient, script: Script
) -> None:
    script.fail("ExportActivations", times=1)
    batches = [batch.doc_ids for batch in client.search.export_activations("arxiv")]
    assert batches == [("doc-0",), ("doc-1",), ("doc-2",)]
    assert len(script.of("ExportActivations")) == 2

    script.fail("ExportActivations.after_first", times=1)
    stream = client.search.export_activations("arxiv")
    assert next(stream).doc_ids == ("doc-0",)
    with pytest.raises(UnavailableError):
        next(stream)
    assert len(script.of("ExportActivations")) == 3


async def test_an_async_stream_of_reads_is_retried_before_its_first_response(
    aclient: AsyncFeaturelensClient, script: Script
) -> None:
    script.fail("ExportActivations", times=2)

    batches = [batch async for batch in aclient.search.export_activations("arxiv")]

    assert len(batches) == 3
    assert len(script.of("ExportActivations")) == 3


async def test_the_async_client_waits_without_blocking_the_event_loop(
    scripted_server: ScriptedServer, script: Script
) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    script.fail("ListSaes", times=1)
    backoff = Backoff(initial_s=0.3, max_s=0.3, jitter=0.0)
    async with AsyncFeaturelensClient(scripted_server.address, backoff=backoff) as client:
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        before = ticks
        await client.sae.list_saes()
        during = ticks - before
        stop.set()
        await ticker

    # A 0.3 s wait that blocked the loop would leave the ticker a tick or two at most.
    assert during >= 10


# -- timeouts -------------------------------------------------------------------------------------


def test_a_server_that_answers_after_the_timeout_is_a_timeout_error_and_not_retried(
    scripted_server: ScriptedServer, script: Script
) -> None:
    script.fail("GetSae", sleep_s=5)

    with FeaturelensClient(scripted_server.address, timeout_s=1.0, backoff=FAST) as client:
        with pytest.raises(APITimeoutError) as caught:
            client.sae.get_sae("sae-a")

    assert isinstance(caught.value, DeadlineExceededError)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.request_id == script.of("GetSae")[0].request_id
    assert len(script.of("GetSae")) == 1


async def test_an_async_call_past_its_own_timeout_is_a_timeout_error(
    aclient: AsyncFeaturelensClient, script: Script
) -> None:
    script.fail("GetSae", sleep_s=5)

    with pytest.raises(APITimeoutError) as caught:
        await aclient.sae.get_sae("sae-a", timeout=0.3)

    assert caught.value.request_id


def test_a_deadline_the_server_reports_for_its_own_calls_is_not_the_clients_timeout(
    client: FeaturelensClient, script: Script
) -> None:
    script.fail(
        "GetSae",
        code=grpc.StatusCode.DEADLINE_EXCEEDED,
        details="the sae service at sae:50051 did not answer within 30 s",
    )

    with pytest.raises(DeadlineExceededError) as caught:
        client.sae.get_sae("sae-a")

    assert not isinstance(caught.value, APITimeoutError)
    assert len(script.of("GetSae")) == 1


def test_a_calls_timeout_overrides_the_clients(scripted_server: ScriptedServer, script: Script) -> None:
    with FeaturelensClient(scripted_server.address, timeout_s=None, backoff=FAST) as client:
        script.fail("GetSae", sleep_s=5)
        with pytest.raises(APITimeoutError):
            client.sae.get_sae("sae-a", timeout=0.3)

        script.fail("GetSae", sleep_s=5)
        with pytest.raises(APITimeoutError):
            client.with_options(timeout=0.3).sae.get_sae("sae-a")
        assert client.timeout_s is None

    with FeaturelensClient(scripted_server.address, timeout_s=0.2, backoff=FAST) as client:
        script.fail("GetSae", sleep_s=0.6, then_answer=True)
        assert client.sae.get_sae("sae-a", timeout=None).sae_id == "sae-a"


def test_a_timeout_bounds_the_retries_and_the_waits_between_them(
    scripted_server: ScriptedServer, script: Script
) -> None:
    script.fail("ListSaes", times=5)
    patient = Backoff(initial_s=30.0, max_s=30.0)

    with FeaturelensClient(scripted_server.address, timeout_s=2.0, backoff=patient) as client:
        with pytest.raises(UnavailableError):
            client.sae.list_saes()

    assert len(script.of("ListSaes")) == 1, "a 30 s wait does not fit in a 2 s call"


def test_bad_options_are_refused(client: FeaturelensClient) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        client.with_options(max_retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        client.with_options(timeout=0)
    with pytest.raises(TypeError, match="max_retries"):
        FeaturelensClient(max_retries=None)  # type: ignore[arg-type]


def test_with_options_shares_the_channels(client: FeaturelensClient, script: Script) -> None:
    other = client.with_options(timeout=5, max_retries=1)

    assert other.sae._transport.channel is client.sae._transport.channel
    assert (other.timeout_s, other.max_retries) == (5, 1)
    assert other.sae.list_saes()[0].sae_id == "sae-a"


def test_the_older_timeout_s_of_a_stream_still_works_with_a_warning(client: FeaturelensClient) -> None:
    with pytest.warns(DeprecationWarning, match="timeout="):
        batches = list(client.search.export_activations("arxiv", timeout_s=10))

    assert len(batches) == 3
    with pytest.raises(TypeError, match="not both"):
        list(client.search.export_activations("arxiv", timeout=1, timeout_s=1))


# -- connection errors ----------------------------------------------------------------------------


def test_a_closed_port_is_a_connection_error_after_the_retries(closed_address: str) -> None:
    with FeaturelensClient(closed_address, backoff=FAST, timeout_s=5) as client:
        with pytest.raises(APIConnectionError) as caught:
            client.sae.list_saes()

    assert isinstance(caught.value, UnavailableError)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "failed to connect" in caught.value.details
    assert caught.value.request_id


async def test_a_closed_port_is_a_connection_error_to_the_async_client(closed_address: str) -> None:
    async with AsyncFeaturelensClient(closed_address, backoff=FAST, timeout_s=5) as client:
        with pytest.raises(APIConnectionError):
            await client.health()


def test_a_server_that_hangs_up_on_every_connection_is_a_connection_error(closed_address: str) -> None:
    import socket

    host, port = closed_address.rsplit(":", 1)
    listener = socket.create_server((host, int(port)))
    listener.settimeout(0.05)
    stop = threading.Event()

    def hang_up() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        with FeaturelensClient(closed_address, backoff=FAST, timeout_s=5) as client:
            with pytest.raises(UnavailableError) as caught:
                client.sae.list_saes()
    finally:
        stop.set()
        thread.join(5)
        listener.close()

    assert isinstance(caught.value, APIConnectionError), caught.value.details
