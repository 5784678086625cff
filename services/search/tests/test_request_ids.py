"""One request id across services: the log lines of a steered search in search, encoder and sae
all carry the id its caller sent, so an operator can join them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from search_testing import CORPUS, Stack

from featurelens.kit.logs import RedactingFilter
from featurelens.v1 import common_pb2, search_pb2

REQUEST_ID = "req-steered-search-7"


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def request_lines() -> Iterator[list[logging.LogRecord]]:
    """The records of the kit's one-line-per-call logger, with their request ids.

    The request id is written on a record by the kit's logging filter, as on the handler that
    ``configure_logging`` installs in every service process.
    """
    logger = logging.getLogger("featurelens.kit.requests")
    keep = Keep()
    keep.addFilter(RedactingFilter())
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    yield keep.records
    logger.removeHandler(keep)
    logger.setLevel(level)


async def test_a_steered_search_logs_the_callers_request_id_in_search_encoder_and_sae(
    stack: Stack, request_lines: list[logging.LogRecord]
) -> None:
    request = search_pb2.SearchRequest(
        corpus=CORPUS,
        text="quasars and active galactic nuclei",
        mode=search_pb2.SEARCH_MODE_HYBRID,
        interventions=[common_pb2.Intervention(feature=3, weight=0.5)],
    )
    request_lines.clear()

    response = await stack.stub.Search(request, metadata=(("x-request-id", REQUEST_ID),))

    assert len(response.hits) == 10
    ids_by_method = {record.getMessage().split()[0]: record.request_id for record in request_lines}
    assert ids_by_method == {
        "/featurelens.v1.SearchService/Search": REQUEST_ID,
        "/featurelens.v1.EncoderService/Embed": REQUEST_ID,
        "/featurelens.v1.SaeService/Steer": REQUEST_ID,
    }
