"""The ``featurelens`` command line against real loopback servers."""

from __future__ import annotations

import gzip
import itertools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from featurelens.cli.main import app
from featurelens.client import FeaturelensClient
from featurelens.corpus import read_corpus
from featurelens.embedding.store import EmbeddingStore

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "arxiv_astro.jsonl.gz"
MODEL_ID = "wordllama-l2-supercat-256"

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 real astro-ph abstracts with one malformed line after the 120th."""
    if not DATA.exists():
        pytest.skip(f"the arXiv data is not at {DATA}")
    with gzip.open(DATA, "rt", encoding="utf-8") as source:
        lines = list(itertools.islice(source, 150))
    lines.insert(120, '{"id": "broken", "title": "no abstract here"}\n')
    path = tmp_path_factory.mktemp("corpus") / "astro.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_health_shows_each_service_and_exits_0_when_serving(encoder_address: str) -> None:
    result = runner.invoke(app, ["health", "--address", encoder_address])

    assert result.exit_code == 0, result.output
    assert "encoder" in result.stdout
    assert "SERVING" in result.stdout
    assert "not hosted" in result.stdout


def test_health_exits_1_with_one_line_when_nothing_listens(closed_address: str) -> None:
    result = runner.invoke(app, ["health", "--address", closed_address])

    assert result.exit_code == 1
    assert f"cannot reach featurelens at {closed_address}" in result.stderr
    assert "Traceback" not in result.output


def test_models_lists_the_served_models(encoder_address: str) -> None:
    result = runner.invoke(app, ["models"], env={"FEATURELENS_ADDRESS": encoder_address})

    assert result.exit_code == 0, result.output
    assert MODEL_ID in result.stdout
    assert "wordllama" in result.stdout


def test_embed_writes_a_store_and_a_second_run_resumes_where_the_first_stopped(
    encoder_address: str, corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "store"
    base = ["embed", str(corpus), "--out", str(out), "--address", encoder_address, "--batch-size", "32"]

    first = runner.invoke(app, [*base, "--limit", "100"])
    assert first.exit_code == 0, first.output
    assert "embedded 100 rows" in first.stdout

    second = runner.invoke(app, base)
    assert second.exit_code == 0, second.output
    assert "embedded 50 rows" in second.stdout
    assert "100 were already there" in second.stdout
    assert "1 malformed rows skipped" in second.stdout
    assert "skipped line 121" in second.stderr

    records = list(read_corpus(corpus))
    with EmbeddingStore.open(out, read_only=True) as store:
        assert (store.model_id, store.dim, len(store)) == (MODEL_ID, 256, 150)
        assert list(store.ids) == [r.id for r in records]
        with FeaturelensClient(encoder_address) as client:
            expected = client.encoder.embed([records[0].embedding_text, records[-1].embedding_text]).vectors
        np.testing.assert_allclose(store.get([records[0].id, records[-1].id]), expected, rtol=1e-5, atol=1e-6)


def test_embed_strict_stops_at_the_malformed_row_with_status_2(
    encoder_address: str, corpus: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["embed", str(corpus), "--out", str(tmp_path / "s"), "--address", encoder_address, "--strict"]
    )

    assert result.exit_code == 2
    assert "121" in result.stderr


def test_embed_of_a_missing_corpus_file_fails_with_status_2(encoder_address: str, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["embed", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "s"), "--address", encoder_address],
    )

    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_embed_refuses_a_store_of_another_model_with_status_2(
    encoder_address: str, corpus: Path, tmp_path: Path
) -> None:
    EmbeddingStore.create(tmp_path / "s", "another-model", 256, sync=False).close()

    result = runner.invoke(
        app, ["embed", str(corpus), "--out", str(tmp_path / "s"), "--address", encoder_address]
    )

    assert result.exit_code == 2
    assert "another-model" in result.stderr


def test_embed_with_an_unknown_model_names_the_servers_sentence(
    encoder_address: str, corpus: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["embed", str(corpus), "--out", str(tmp_path / "s"), "--address", encoder_address, "--model", "nope"],
    )

    assert result.exit_code == 1
    assert "NOT_FOUND: unknown model 'nope'" in result.stderr


def test_up_serves_every_installed_service_until_interrupted(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("FEATURELENS_REDIS_URL", None)
    command = [sys.executable, "-m", "featurelens.cli.main", "up", "--port", "0", "--http-port", "0"]
    command += ["--models", "wordllama"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "featurelens is up at" in line, process.stderr.read() if process.stderr else line
        address = line.split("featurelens is up at ")[1].split()[0]
        with FeaturelensClient(address) as client:
            assert client.health() == "SERVING"
            assert client.encoder.embed(["hello from the embedded mode"]).model_id == MODEL_ID
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == 0
    assert "featurelens stopped" in out
    assert (tmp_path / "data").is_dir()


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """`up` configures the root logger of the process it runs in, here the test process."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_up_with_an_invalid_setting_says_which_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_ENCODER_BATCH_SIZE", "many")

    result = runner.invoke(app, ["up", "--port", "0", "--http-port", "0", "--models", "wordllama"])

    assert result.exit_code == 1
    assert "batch_size" in result.stderr


def test_search_of_an_attached_collection_passes_their_filter_and_shows_their_payload(
    services_address: str, fake_search: Any
) -> None:
    their_filter = '{"must": [{"key": "year", "range": {"gte": 2020}}]}'
    result = runner.invoke(
        app,
        [
            *("search", "dark matter", "--corpus", "arxiv", "--top-k", "2", "--address", services_address),
            *("--qdrant-filter", their_filter, "--payload-field", "lang", "--payload-field", "year"),
            *("--dense-vector", "emb"),
        ],
    )

    assert result.exit_code == 0, result.output
    sent = fake_search.last_search
    assert (sent.qdrant_filter, list(sent.payload_fields), sent.dense_vector) == (
        their_filter,
        ["lang", "year"],
        "emb",
    )
    assert '{"lang": "lang-1", "year": "year-1"}' in result.stdout
