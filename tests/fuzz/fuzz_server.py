"""The one server the fuzz suite attacks: the embedded host in a child process, with data to reach into.

``start_fuzz_server`` prepares, in a temporary folder:

- ``models/``: a tiny SAE (256 latents, k 8) trained by the library on wordllama embeddings of
  real abstracts (synthetic sentences when the data folder is absent), pinned as the default so
  that a fuzzed ``Train`` with ``make_default`` cannot change what every other request uses;
- ``allowed/``: the only folder the server may read client-named files from (corpus roots and
  train data roots), holding good and bad corpus files, two embedding stores and a link that
  points outside it;
- a corpus ``fuzz`` of those abstracts, indexed through the running server's IndexDocuments,

then starts every installed service in one process with ``featurelens.kit.launcher.start_embedded``
(wordllama as the encoder's model) and yields what the strategies need to build valid-looking
requests (``Hints``). The child's log is kept so that a test can see how much one request grew it.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurelens.corpus import Record, read_corpus
from featurelens.embedding import EmbeddingStore
from featurelens.embedding.backends import load_backend
from featurelens.kit.launcher import RunningHost, start_embedded
from featurelens.v1 import common_pb2, search_pb2, search_pb2_grpc

DATA_DIR = Path(
    os.environ.get("FEATURELENS_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data")
)
ASTRO = DATA_DIR / "arxiv_astro.jsonl.gz"
CORPUS = "fuzz"
#: Documents indexed into the corpus, and the further ones written to the good corpus files.
INDEXED_DOCS = 240
FILE_DOCS = 12
NUM_LATENTS = 256
K = 8
#: The dimension of the embedding store that Train requests may name (small, so training is quick).
TRAIN_DIM = 32
TRAIN_ROWS = 200
#: The embedding stores in the allowed folder: wordllama vectors of the corpus, and small training data.
STORES = ("corpus.emb", "train.emb")
#: Client and server message limit (the services' default).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: A configured secret that must never reach a client (the search service holds it, unused).
SECRET_CANARY = "fuzz-canary-3f9c2a7d61e04b58"
#: Settings that keep a fuzzed Train small enough for a shared CI machine; Train answers a request
#: beyond them with a sentence (that refusal is fuzzed too).
TRAIN_LIMITS = {
    "FEATURELENS_SAE_MAX_NUM_LATENTS": "4096",
    "FEATURELENS_SAE_MAX_TRAIN_EPOCHS": "4",
    "FEATURELENS_SAE_MAX_TRAIN_BATCH_SIZE": "4096",
    "FEATURELENS_SAE_TRAIN_PROGRESS_INTERVAL_S": "0.2",
}


@dataclass
class Hints:
    """Values that make a fuzzed request reach past validation, by the field names that carry them."""

    sae_ids: list[str]
    corpora: list[str]
    models: list[str]
    #: Client-named server paths: good corpus files and embedding stores inside the allowed folder,
    #: and bad ones (damaged, empty, missing, outside it, not a path at all).
    corpus_files: list[str]
    stores: list[str]
    bad_paths: list[str]
    words: list[str]
    doc_ids: list[str]
    categories: list[str]
    dates: list[str]
    dim: int
    train_dim: int
    num_latents: int


@dataclass
class FuzzServer:
    """The running host, a channel to it and what it was prepared with."""

    host: RunningHost
    channel: grpc.Channel
    hints: Hints
    allowed: Path
    log_path: Path
    served: frozenset[str] = field(default_factory=frozenset)

    @property
    def address(self) -> str:
        return self.host.address

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def health(self, service: str = "") -> str:
        """The health status name of ``service`` ("" = the whole server), or the error code's name."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        except grpc.RpcError as error:
            return error.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def assert_healthy(self, after: str) -> None:
        """The child is alive and every service it hosts reports SERVING."""
        exit_code = self.host.process.poll()
        assert exit_code is None, f"the server exited with {exit_code} after {after}; see {self.log_path}"
        for service in ["", *sorted(self.served)]:
            status = self.health(service)
            assert status == "SERVING", f"health of {service or 'the server'} is {status} after {after}"


def channel_to(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )


def abstracts(count: int) -> list[Record]:
    """Real astro-ph abstracts spread over the file, or synthetic ones when the data is absent."""
    if ASTRO.is_file():
        return list(itertools.islice(read_corpus(ASTRO), 0, 13 * count, 13))
    rng = random.Random(0)
    topics = ["galaxy", "cluster", "dark matter", "supernova", "exoplanet", "pulsar", "quasar", "lensing"]
    verbs = ["constrains", "measures", "predicts", "reveals", "models", "simulates"]
    records = []
    for i in range(count):
        a, b = rng.sample(topics, 2)
        text = f"This work {rng.choice(verbs)} {a} formation with {b} observations at redshift {i % 7}."
        records.append(
            Record(
                f"syn-{i:04d}", f"{a.title()} and {b}", text, ("astro-ph.GA",), f"2024-0{1 + i % 9}-1{i % 9}"
            )
        )
    return records


def _row(record: Record) -> dict[str, object]:
    return {
        "id": record.id,
        "title": record.title,
        "abstract": record.text,
        "categories": list(record.categories),
        "date": record.date,
    }


def write_allowed_folder(
    allowed: Path, outside: Path, records: Sequence[Record]
) -> tuple[list[str], list[str]]:
    """Good and bad corpus files a client may name; returns (good, bad) paths, absolute and relative
    (the embedding stores are written by the caller)."""
    allowed.mkdir(parents=True)
    lines = [json.dumps(_row(r)) for r in records]
    (allowed / "good.jsonl").write_text("\n".join(lines) + "\n")
    (allowed / "good.csv").write_text(
        "id,title,abstract,categories,date\n"
        + "".join(f'{r.id},"{r.title.replace(chr(34), "")}","{r.text.replace(chr(34), "")}",'
                  f'{" ".join(r.categories)},{r.date}\n' for r in records[:4])
    )  # fmt: skip
    (allowed / "rows.jsonl").write_text(
        "\n".join([lines[0], "{not json", '{"id": ["a"], "abstract": 3}', '{"id": "x"}', "[]", lines[1]])
        + "\n"
    )
    (allowed / "empty.jsonl").write_text("")
    (allowed / "corrupt.parquet").write_bytes(b"PAR1" + random.Random(1).randbytes(2000) + b"PAR1")
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    (allowed / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (allowed / "latin1.csv").write_bytes(
        b"id,title,abstract,categories,date\nl1,Caf\xe9,Na\xefve \xff\xfe text,astro-ph,2024-01-01\n"
    )
    (allowed / "notes.txt").write_text("not a corpus\n")
    (allowed / "sub").mkdir()
    (allowed / "sub" / "nested.jsonl").write_text(lines[2] + "\n")
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.jsonl").write_text(lines[3] + "\n")
    (allowed / "escape.jsonl").symlink_to(outside / "secret.jsonl")
    (allowed / "loop.jsonl").symlink_to(allowed / "loop.jsonl")
    good = ["good.jsonl", "good.csv", "rows.jsonl", "sub/nested.jsonl"]
    bad = [
        "empty.jsonl",
        "corrupt.parquet",
        "truncated.jsonl.gz",
        "latin1.csv",
        "notes.txt",
        "escape.jsonl",
        "loop.jsonl",
        "missing.jsonl",
        "sub",
        ".",
    ]
    absolute = [str(allowed / name) for name in good + bad]
    hostile = [
        str(outside / "secret.jsonl"),
        str(allowed / ".." / outside.name / "secret.jsonl"),
        "../" * 12 + "etc/passwd",
        "/etc/passwd",
        "/dev/zero",
        "/proc/self/environ",
        "~/.ssh/id_rsa",
        str(allowed / "a\x00b.jsonl"),
        "z" * 300,
        str(allowed / ("z" * 300 + ".jsonl")),
        str(allowed) + "/d" * 3000 + ".jsonl",
        "file:///etc/passwd",
        "\\\\server\\share\\corpus.jsonl",
        str(allowed / "ünï cødé ☃.jsonl"),
        "",
        " ",
        "/",
    ]
    return good + [str(allowed / n) for n in good], bad + absolute[len(good) :] + hostile


def write_store(path: Path, model_id: str, ids: Sequence[str], vectors: np.ndarray) -> None:
    with EmbeddingStore.create(path, model_id, vectors.shape[1], sync=False) as store:
        store.append(list(ids), vectors.astype(np.float32))


def train_default_sae(models: Path, vectors: np.ndarray, model_id: str) -> str:
    """A tiny SAE trained by the library on ``vectors``, saved under ``models``; its id."""
    from featurelens.sae import SaeConfig, TrainConfig, save_sae, train_sae

    train_cfg = TrainConfig(batch_size=64, lr=2e-3, epochs=8, seed=0)
    result = train_sae(vectors, SaeConfig(d_in=vectors.shape[1], num_latents=NUM_LATENTS, k=K), train_cfg)
    save_sae(
        result.sae,
        models / result.sae_id,
        train_cfg=train_cfg,
        embedding_model=model_id,
        data_fingerprint=result.data_fingerprint,
    )
    return result.sae_id


def child_environment(work: Path, allowed: Path, models: Path, sae_id: str) -> dict[str, str]:
    """This process's environment without any featurelens setting, plus the fuzz server's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEATURELENS_")}
    roots = json.dumps([str(allowed)])
    env |= {
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "FEATURELENS_SAE_MODELS_DIR": str(models),
        "FEATURELENS_SAE_DEFAULT_SAE_ID": sae_id,
        "FEATURELENS_SAE_TRAIN_DATA_ROOTS": roots,
        "FEATURELENS_SEARCH_CORPUS_ROOTS": roots,
        "FEATURELENS_SEARCH_EDGE_PATH": str(work / "qdrant"),
        "FEATURELENS_SEARCH_QDRANT_API_KEY": SECRET_CANARY,
        "FEATURELENS_LABELLING_QDRANT_API_KEY": SECRET_CANARY,
        "FEATURELENS_LABELLING_LLM_API_KEY": SECRET_CANARY,
        # No LLM endpoint answers here: a fuzzed llm_base_url is refused rather than dialled.
        "FEATURELENS_LABELLING_LLM_ALLOW_LOOPBACK": "false",
        "FEATURELENS_FAMILY_QDRANT_API_KEY": SECRET_CANARY,
        **TRAIN_LIMITS,
    }
    return env


def index_corpus(channel: grpc.Channel, records: Sequence[Record]) -> None:
    """Index ``records`` as corpus ``fuzz`` through the server (the way a client does)."""
    stub = search_pb2_grpc.SearchServiceStub(channel)
    documents = [
        common_pb2.Document(id=r.id, title=r.title, text=r.text, categories=list(r.categories), date=r.date)
        for r in records
    ]
    requests = [search_pb2.IndexDocumentsRequest(setup=search_pb2.IndexSetup(corpus=CORPUS, batch_size=120))]
    for start in range(0, len(documents), 120):
        batch = search_pb2.DocumentBatch(documents=documents[start : start + 120])
        requests.append(search_pb2.IndexDocumentsRequest(documents=batch))
    responses = list(stub.IndexDocuments(iter(requests), timeout=120))
    assert responses, "indexing the fuzz corpus answered nothing"
    assert responses[-1].indexed == len(records), responses[-1]


def served_services(channel: grpc.Channel, names: Sequence[str]) -> frozenset[str]:
    """The services among ``names`` that the server's health service knows (SERVING or not)."""
    stub = health_pb2_grpc.HealthStub(channel)
    served = set()
    for name in names:
        try:
            stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                continue
            raise
        served.add(name)
    return frozenset(served)


@contextmanager
def start_fuzz_server(work: Path, service_names: Sequence[str]) -> Iterator[FuzzServer]:
    """Prepare the data in ``work`` and serve every installed service on it until the block ends."""
    records = abstracts(INDEXED_DOCS + FILE_DOCS)
    indexed, in_files = records[:INDEXED_DOCS], records[INDEXED_DOCS:]
    allowed, models = work / "allowed", work / "models"
    models.mkdir(parents=True)
    corpus_files, bad = write_allowed_folder(allowed, work / "outside", in_files)

    wordllama = load_backend("wordllama")
    vectors = wordllama.embed([r.embedding_text for r in indexed]).vectors.astype(np.float32)
    sae_id = train_default_sae(models, vectors, wordllama.model_id)
    write_store(allowed / "corpus.emb", wordllama.model_id, [r.id for r in indexed], vectors)
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((6, TRAIN_DIM))
    rows = rng.standard_normal((TRAIN_ROWS, 6)) @ basis + 0.05 * rng.standard_normal((TRAIN_ROWS, TRAIN_DIM))
    write_store(allowed / "train.emb", "fuzz-model", [f"t-{i}" for i in range(TRAIN_ROWS)], rows)

    log_path = work / "server.log"
    with start_embedded(
        data_dir=work / "data",
        models=["wordllama"],
        env=child_environment(work, allowed, models, sae_id),
        log_path=log_path,
        log_format="text",
        timeout_s=240,
        stop_timeout_s=30,
    ) as host:
        channel = channel_to(host.address)
        try:
            index_corpus(channel, indexed)
            hints = Hints(
                sae_ids=[sae_id],
                corpora=[CORPUS],
                models=[wordllama.model_id, "wordllama"],
                corpus_files=corpus_files,
                stores=[
                    name for store in ("corpus.emb", "train.emb") for name in (store, str(allowed / store))
                ],
                bad_paths=bad,
                words=sorted({w for r in indexed[:40] for w in r.title.split() if w.isalpha()})[:200]
                or ["galaxy"],
                doc_ids=[r.id for r in records[:30]],
                categories=sorted({c for r in indexed for c in r.categories})[:30] or ["astro-ph.GA"],
                dates=sorted({r.date for r in indexed if r.date})[:10] or ["2024-01-01"],
                dim=int(vectors.shape[1]),
                train_dim=TRAIN_DIM,
                num_latents=NUM_LATENTS,
            )
            served = served_services(channel, service_names)
            yield FuzzServer(host, channel, hints, allowed, log_path, served)
        finally:
            channel.close()
