"""``featurelens sae train --from-file | --from-qdrant``: the real sae service trains on a user's own
vectors (a .npy or Parquet file, a collection of a Qdrant store in qdrant-client's local folder
mode), served on loopback and called through the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from qdrant_client import QdrantClient, models
from typer.testing import CliRunner

from featurelens.cli.main import app
from featurelens.sae import read_checkpoint
from featurelens.services.sae.registry import SaeRegistry
from featurelens.services.sae.servicer import SaeServicer
from featurelens.store import QdrantServerDocumentStore

DIM = 16
#: A short run: 6 steps of 32 rows, 32 latents with k 4.
RUN = [
    "--k",
    "4",
    "--latents",
    "32",
    "--batch-size",
    "32",
    "--max-steps",
    "6",
    "--epochs",
    "1",
    "--seed",
    "3",
]

runner = CliRunner()


def their_vectors(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, DIM)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These matrices are tiny: one thread beats two that contend for the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sae-sources")


@pytest.fixture(scope="module")
def train_roots(folder: Path) -> Path:
    """The one folder the served sae service may read files from, with a .npy and a Parquet file."""
    roots = folder / "data"
    roots.mkdir()
    np.save(roots / "products.npy", their_vectors(120))
    table = pa.table({"emb": pa.array(their_vectors(100).tolist(), type=pa.list_(pa.float32(), DIM))})
    pq.write_table(table, roots / "emb.parquet")
    return roots


@pytest.fixture(scope="module")
def qdrant_folder(folder: Path) -> Path:
    """A qdrant-client local folder holding "products" (300 points, named vector "dense")."""
    path = folder / "qdrant"
    client = QdrantClient(path=str(path))
    client.create_collection(
        "products", vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.DOT)}
    )
    points = [
        models.PointStruct(id=i, vector={"dense": row.tolist()}, payload={"sku": i})
        for i, row in enumerate(their_vectors(300))
    ]
    client.upsert("products", points)
    client.close()  # the folder is locked while a client holds it: the service opens its own
    return path


def servicer(folder: Path, name: str, roots: Path, qdrant: Path | None) -> SaeServicer:
    """The real sae servicer over an empty models folder; reads the Qdrant folder when given one."""
    registry = SaeRegistry(folder / name / "models", max_loaded=2)
    return SaeServicer(
        registry,
        train_data_roots=[roots],
        train_progress_interval_s=0.0,
        open_vector_store=(lambda: QdrantServerDocumentStore(QdrantClient(path=str(qdrant))))
        if qdrant is not None
        else None,
        max_train_rows=200,
        work_dir=folder / name / "work",
    )


@pytest.fixture(scope="module")
def with_store(
    serve: Callable[..., str], folder: Path, train_roots: Path, qdrant_folder: Path
) -> tuple[str, SaeServicer]:
    """(address, servicer) of an sae service with a Qdrant store."""
    served = servicer(folder, "with-store", train_roots, qdrant_folder)
    return serve([served]), served


@pytest.fixture(scope="module")
def without_store(serve: Callable[..., str], folder: Path, train_roots: Path) -> str:
    """The address of an sae service with no Qdrant store (as `featurelens up` runs it by default)."""
    return serve([servicer(folder, "without-store", train_roots, None)])


def train(address: str, *args: str, served: SaeServicer | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `featurelens sae train`; waits for the run's thread to end
    (it ends just after the last message), so the next run does not find it still running."""
    result = runner.invoke(app, ["sae", "train", *args, "--address", address])
    job = served.training if served is not None else None
    if job is not None:
        job.thread.join(30)
    return result.exit_code, result.stdout, flat(result.stderr)


def flat(text: str) -> str:
    """The words of a console text, without the frame of typer's error panel or its line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def trained_id(stdout: str) -> str:
    found = re.search(r"sae_id\s+│?\s*(sae-\S+)", stdout) or re.search(r"(sae-[0-9a-z-]+)", stdout)
    assert found, stdout
    return found.group(1)


def test_train_from_a_npy_file_on_the_server(with_store: tuple[str, SaeServicer]) -> None:
    address, served = with_store

    code, stdout, stderr = train(address, "--from-file", "products.npy", *RUN, served=served)

    assert code == 0, stderr
    sae_id = trained_id(stdout)
    info = read_checkpoint(served.registry.models_dir / sae_id)
    assert (info.sae_config.d_in, info.sae_config.num_latents, info.sae_config.k) == (DIM, 32, 4)
    assert "products.npy" in stdout
    assert "default" in stdout
    assert "Traceback" not in stderr


def test_train_from_a_parquet_column(with_store: tuple[str, SaeServicer]) -> None:
    address, served = with_store

    code, stdout, stderr = train(
        address, "--from-file", "emb.parquet", "--column", "emb", "--max-rows", "80", *RUN, served=served
    )

    assert code == 0, stderr
    sae_id = trained_id(stdout)
    assert (served.registry.models_dir / sae_id / "config.json").is_file()
    assert "column 'emb'" in flat(stdout)


def test_train_from_a_qdrant_collection(with_store: tuple[str, SaeServicer]) -> None:
    address, served = with_store

    code, stdout, stderr = train(
        address, "--from-qdrant", "products", "--vector", "dense", "--max-rows", "150", *RUN, served=served
    )

    assert code == 0, stderr
    sae_id = trained_id(stdout)
    assert read_checkpoint(served.registry.models_dir / sae_id).sae_config.d_in == DIM
    assert "collection 'products', vector 'dense'" in flat(stdout)
    assert "reading 150 rows of dim 16" in stderr  # the service's first message, above the bar


def test_an_unknown_collection_exits_1_with_the_not_found_sentence(
    with_store: tuple[str, SaeServicer],
) -> None:
    address, served = with_store

    code, _, stderr = train(address, "--from-qdrant", "nope", *RUN, served=served)

    assert code == 1
    assert "NOT_FOUND: collection 'nope' does not exist; the store has: 'products'" in stderr
    assert "Traceback" not in stderr


def test_a_file_outside_the_allowed_folders_is_permission_denied(
    with_store: tuple[str, SaeServicer], tmp_path: Path
) -> None:
    address, served = with_store
    np.save(tmp_path / "outside.npy", their_vectors(10))

    code, _, stderr = train(address, "--from-file", str(tmp_path / "outside.npy"), *RUN, served=served)

    assert code == 1
    assert "PERMISSION_DENIED: file.path" in stderr
    assert "outside the folders this server may read" in stderr


def test_a_server_without_a_qdrant_store_says_how_to_give_it_one(without_store: str) -> None:
    code, _, stderr = train(without_store, "--from-qdrant", "products", *RUN)

    assert code == 1
    assert "FAILED_PRECONDITION: this server has no Qdrant store configured" in stderr
    assert "`featurelens up` (the embedded mode) gives the sae service no Qdrant store by default" in stderr
    assert "--from-file" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{store}", "--from-file", "products.npy"],
            "name one training source, not 2 (EMBEDDINGS and --from-file)",
        ),
        (
            ["--from-qdrant", "products", "--from-file", "products.npy"],
            "name one training source, not 2 (--from-qdrant and --from-file)",
        ),
        ([], "name a training source"),
        (
            ["--from-file", "products.npy", "--vector", "dense"],
            "names a vector of --from-qdrant's collection",
        ),
        (["--from-qdrant", "products", "--column", "emb"], "names a column of --from-file's Parquet file"),
        (["{store}", "--max-rows", "10", "--out", "{store}"], "samples a source on the server"),
        (["--from-file", "products.npy", "--out", "{store}"], "is for training here"),
        (["--from-qdrant", "products", "--device", "cpu"], "is for training here"),
        (["{store}"], "training here needs EMBEDDINGS and --out OUT"),
    ],
    ids=[
        "embeddings and a file",
        "a collection and a file",
        "no source",
        "a vector without a collection",
        "a column without a file",
        "max rows of local embeddings",
        "out with a server source",
        "device with a server source",
        "no out",
    ],
)
def test_sources_and_their_options_that_do_not_fit_are_usage_errors(
    args: list[str], message: str, closed_address: str, train_roots: Path
) -> None:
    filled = [a.format(store=train_roots / "products.npy") for a in args]

    # Nothing listens at closed_address: a usage error is found before any call.
    code, _, stderr = train(closed_address, *filled, "--k", "4")

    assert code == 2, stderr
    assert "Usage:" in stderr
    assert message in stderr
    assert "Traceback" not in stderr


def test_the_help_names_the_sources_and_the_embedded_mode_caveat() -> None:
    result = runner.invoke(app, ["sae", "train", "--help"], env={"COLUMNS": "200"})

    text = flat(result.stdout)
    for option in ("--from-qdrant", "--from-file", "--vector", "--column", "--max-rows"):
        assert option in text
    assert "`featurelens up` gives it none by default" in text
