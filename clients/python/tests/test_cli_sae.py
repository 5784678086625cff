"""``featurelens sae train | eval | sweep`` on a tiny embedding store, in this process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from featurelens.cli.main import app
from featurelens.embedding.store import EmbeddingStore
from featurelens.sae import SaeConfig, TrainConfig, evaluate, load_sae, read_checkpoint

D_IN = 32
MODEL_ID = "test-model"

runner = CliRunner()


def checkpoints(models: Path) -> list[Path]:
    """The SAE folders of a models directory (its ``default`` marker aside)."""
    return sorted(path for path in models.iterdir() if path.is_dir())


def structured_data(n: int, seed: int = 0) -> np.ndarray:
    """Sparse sums of 128 unit directions (~4 per row) plus noise."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((128, D_IN))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    codes = (rng.random((n, 128)) < 4 / 128) * rng.uniform(0.5, 1.5, (n, 128))
    return (codes @ directions + 0.01 * rng.standard_normal((n, D_IN))).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These matrices are tiny: one thread beats two that contend for the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding store of 600 structured 32-d rows."""
    path = tmp_path_factory.mktemp("store")
    vectors = structured_data(600)
    with EmbeddingStore.create(path, MODEL_ID, D_IN, sync=False) as created:
        created.append([f"doc-{i}" for i in range(len(vectors))], vectors)
    return path


@pytest.fixture(scope="module")
def trained(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(models dir, stdout) of one `featurelens sae train` run: 540 training rows, 2 epochs of 8 steps."""
    models = tmp_path_factory.mktemp("models")
    args = ["sae", "train", str(store), "--latents", "64", "--k", "4", "--out", str(models)]
    result = runner.invoke(app, [*args, "--batch-size", "64", "--epochs", "2", "--lr", "1e-2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return models, result.stdout


def test_train_writes_a_loadable_checkpoint_named_by_its_sae_id_and_prints_the_summary(
    trained: tuple[Path, str],
) -> None:
    models, stdout = trained
    [checkpoint] = checkpoints(models)  # no staging folder is left behind
    info = read_checkpoint(checkpoint)
    assert checkpoint.name == info.sae_id
    assert info.embedding_model == MODEL_ID
    assert info.train_config is not None
    assert (info.train_config.epochs, info.train_config.batch_size, info.train_config.seed) == (2, 64, 3)
    sae = load_sae(checkpoint)
    assert (sae.d_in, sae.num_latents, sae.k) == (D_IN, 64, 4)
    assert info.metrics is not None
    for expected in (info.sae_id, "train NMSE", "val NMSE", "dead %", "dense %", "samples/s", MODEL_ID):
        assert expected in stdout
    assert "16 of 64 rows" in stdout
    assert f"{info.metrics['final_val_nmse']:.4f}" in stdout


def test_training_the_same_recipe_again_replaces_its_checkpoint(store: Path, tmp_path: Path) -> None:
    args = [
        "sae",
        "train",
        str(store),
        "--latents",
        "32",
        "--k",
        "2",
        "--out",
        str(tmp_path),
        "--max-steps",
        "2",
    ]
    first = runner.invoke(app, [*args, "--batch-size", "64"])
    second = runner.invoke(app, [*args, "--batch-size", "64"])
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert len(checkpoints(tmp_path)) == 1


def test_the_first_sae_of_a_folder_becomes_its_default_and_a_later_one_only_with_make_default(
    store: Path, tmp_path: Path
) -> None:
    args = ["sae", "train", str(store), "--k", "2", "--out", str(tmp_path), "--max-steps", "2"]

    first = runner.invoke(app, [*args, "--latents", "32"])
    second = runner.invoke(app, [*args, "--latents", "48"])
    default_after_second = (tmp_path / "default").read_text().strip()
    third = runner.invoke(app, [*args, "--latents", "64", "--make-default"])

    assert first.exit_code == second.exit_code == third.exit_code == 0, first.output + second.output
    ids = {read_checkpoint(path).sae_config.num_latents: path.name for path in checkpoints(tmp_path)}
    assert default_after_second == ids[32]
    assert "no (--make-default makes it so)" in second.stdout
    assert (tmp_path / "default").read_text().strip() == ids[64]


def test_train_accepts_a_npy_file_with_the_model_named_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "vectors.npy"
    np.save(path, structured_data(200, seed=1))
    out = tmp_path / "models"
    result = runner.invoke(
        app,
        [
            *("sae", "train", str(path), "--latents", "32", "--k", "4", "--out", str(out)),
            *("--batch-size", "32", "--max-steps", "3", "--embedding-model", "my-model"),
        ],
    )
    assert result.exit_code == 0, result.output
    [checkpoint] = checkpoints(out)
    assert read_checkpoint(checkpoint).embedding_model == "my-model"


def test_train_options_left_out_take_the_core_defaults(store: Path, tmp_path: Path) -> None:
    # 540 training rows and the default batch of 1024: one step of 540 rows.
    result = runner.invoke(
        app, ["sae", "train", str(store), "--latents", "32", "--k", "2", "--out", str(tmp_path)]
    )

    assert result.exit_code == 0, result.output
    [checkpoint] = checkpoints(tmp_path)
    info = read_checkpoint(checkpoint)
    assert info.sae_config == SaeConfig(d_in=D_IN, num_latents=32, k=2)
    assert info.train_config == TrainConfig()


def test_auxk_coef_0_and_val_fraction_0_switch_auxk_and_validation_off(store: Path, tmp_path: Path) -> None:
    args = ["sae", "train", str(store), "--latents", "32", "--k", "2", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--auxk-coef", "0", "--val-fraction", "0", "--batch-size", "200"])

    assert result.exit_code == 0, result.output
    [checkpoint] = checkpoints(tmp_path)
    info = read_checkpoint(checkpoint)
    assert info.sae_config.auxk_coef == 0.0
    assert info.train_config is not None
    assert info.train_config.val_fraction == 0.0
    assert info.metrics is not None
    assert info.metrics["samples"] == 600  # every row trained on: none held out
    assert "final_val_nmse" not in info.metrics


def test_train_without_latents_sizes_the_run_with_the_core_rule_and_leads_with_the_validation_nmse(
    store: Path, tmp_path: Path
) -> None:
    """600 rows, 540 training rows: the rule's sparsity floor for k=4 (32 * 4 = 128 latents) and its
    200-epoch cap, cut short here by --max-steps."""
    args = ["sae", "train", str(store), "--k", "4", "--out", str(tmp_path), "--batch-size", "64"]
    result = runner.invoke(app, [*args, "--max-steps", "24", "--lr", "1e-2"])

    assert result.exit_code == 0, result.output
    [checkpoint] = checkpoints(tmp_path)
    info = read_checkpoint(checkpoint)
    assert info.sae_config.num_latents == 128
    assert info.train_config is not None
    assert info.train_config.epochs == 200
    assert info.metrics is not None
    assert info.metrics["best_epoch"] == 2
    stdout = result.stdout
    assert stdout.index("val NMSE") < stdout.index("train NMSE")
    assert f"{info.metrics['final_val_nmse']:.4f}" in stdout
    assert "epoch 3 of 3 (the best validation NMSE)" in stdout


def overfitting_data() -> np.ndarray:
    """The constructed case of libs/core/tests/test_sae_early_stopping.py: 100 training rows of a
    rank-8 signal under strong noise for 256 latents; with its recipe the validation NMSE is lowest
    after the 13th epoch and worse for the three after it."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 32))
    rng.standard_normal((200, 32))  # keeps the random stream the case was found with
    return (rng.standard_normal((200, 8)) @ base + rng.standard_normal((200, 32))).astype(np.float32)


def test_patience_ends_the_run_early_and_the_summary_says_which_epoch_it_kept(tmp_path: Path) -> None:
    data = tmp_path / "noisy.npy"
    np.save(data, overfitting_data())
    models = tmp_path / "models"
    args = ["sae", "train", str(data), "--latents", "256", "--k", "4", "--out", str(models)]
    recipe = ["--batch-size", "20", "--lr", "1e-2", "--seed", "1", "--val-fraction", "0.5"]

    result = runner.invoke(app, [*args, *recipe, "--epochs", "40", "--patience", "3"])

    assert result.exit_code == 0, result.output
    [checkpoint] = checkpoints(models)
    info = read_checkpoint(checkpoint)
    assert info.train_config is not None
    assert info.train_config.patience == 3
    assert info.metrics is not None
    assert info.metrics["best_epoch"] == 12
    assert info.metrics["stopped_early"] is True
    assert "epoch 13 of 16 (the best validation NMSE; stopped early)" in result.stdout


def test_the_help_shows_the_core_defaults() -> None:
    result = runner.invoke(app, ["sae", "train", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})

    assert result.exit_code == 0, result.output
    defaults = TrainConfig()
    assert f"default {defaults.batch_size}." in result.stdout
    assert f"default {defaults.val_fraction:g}." in result.stdout
    assert f"default {SaeConfig.auxk_coef:g}." in result.stdout


def test_eval_prints_nmse_dead_dense_and_a_text_histogram(trained: tuple[Path, str], store: Path) -> None:
    [checkpoint] = checkpoints(trained[0])
    result = runner.invoke(app, ["sae", "eval", str(checkpoint), str(store), "--limit", "300"])
    assert result.exit_code == 0, result.output
    with EmbeddingStore.open(store, read_only=True) as opened:
        expected = evaluate(load_sae(checkpoint), np.array(opened.vectors()[:300]), num_bins=20)
    assert f"{expected.nmse:.4f}" in result.stdout
    assert "on 300 rows" in result.stdout
    assert "dead %" in result.stdout
    assert "dense %" in result.stdout
    assert "█" in result.stdout
    assert "latents never fire" in result.stdout


def test_eval_on_the_training_embeddings_leads_with_the_held_out_nmse(
    trained: tuple[Path, str], store: Path
) -> None:
    [checkpoint] = checkpoints(trained[0])
    info = read_checkpoint(checkpoint)
    assert info.metrics is not None

    shown = runner.invoke(app, ["sae", "eval", str(checkpoint), str(store)])
    figures = json.loads(runner.invoke(app, ["sae", "eval", str(checkpoint), str(store), "--json"]).stdout)

    assert shown.exit_code == 0, shown.output
    assert (
        shown.stdout.index("val NMSE") < shown.stdout.index("train NMSE") < shown.stdout.index("(all rows)")
    )
    assert "its 60 held-out rows" in shown.stdout
    assert figures["val_rows"] == 60
    assert figures["val_nmse"] == pytest.approx(info.metrics["final_val_nmse"], rel=1e-6)
    assert figures["train_nmse"] == pytest.approx(info.metrics["final_train_nmse"], rel=1e-6)


def test_eval_json_gives_the_same_figures_as_the_library(trained: tuple[Path, str], store: Path) -> None:
    [checkpoint] = checkpoints(trained[0])
    result = runner.invoke(app, ["sae", "eval", str(checkpoint), str(store), "--json", "--bins", "10"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    with EmbeddingStore.open(store, read_only=True) as opened:
        expected = evaluate(load_sae(checkpoint), np.array(opened.vectors()), num_bins=10)
    assert figures["sae_id"] == checkpoint.name
    assert figures["num_rows"] == 600
    assert figures["nmse"] == pytest.approx(expected.nmse)
    assert figures["dead_fraction"] == expected.dead_fraction
    assert figures["dense_fraction"] == expected.dense_fraction
    assert figures["density_histogram"]["counts"] == expected.histogram_counts


def test_sweep_writes_sweep_json_and_plots_and_prints_the_fits(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = runner.invoke(
        app,
        [
            *("sae", "sweep", str(store), "--latents", "32,64", "--k", "2,4", "--out", str(out)),
            *("--batch-size", "64", "--epochs", "2", "--lr", "1e-2", "--save-checkpoints"),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "sweep.json").read_text())
    assert [(r["num_latents"], r["k"]) for r in data["runs"]] == [(32, 2), (64, 2), (32, 4), (64, 4)]
    assert data["embedding_model"] == MODEL_ID
    assert [f["k"] for f in data["fits"]["nmse_vs_latents"]] == [2, 4]
    for name in ("nmse_vs_latents.png", "nmse_vs_flops.png", "feature_density.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
        assert f"wrote {out / name}" in result.stdout
    assert len(list((out / "runs").iterdir())) == 4
    assert "power laws of the held-out NMSE" in result.stdout
    assert f"{data['fits']['nmse_vs_latents'][0]['b']:.4f}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{missing}", "--latents", "64", "--k", "4", "--out", "{tmp}"], "does not exist"),
        (["train", "{tmp}", "--latents", "64", "--k", "4", "--out", "{tmp}/m"], "is not an embedding store"),
        (["train", "{store}", "--latents", "8", "--k", "16", "--out", "{tmp}"], "cannot exceed num_latents"),
        (["train", "{store}", "--latents", "64", "--k", "0", "--out", "{tmp}"], "greater than or equal to 1"),
        (
            ["train", "{store}", "--latents", "64", "--k", "4", "--out", "{tmp}", "--val-fraction", "1.5"],
            "val_fraction must be in [0, 1)",
        ),
        (
            ["train", "{store}", "--latents", "64", "--k", "4", "--out", "{tmp}", "--device", "tpu"],
            "--device",
        ),
        (["sweep", "{store}", "--latents", "64,abc", "--k", "4", "--out", "{tmp}"], "comma-separated"),
        (["sweep", "{store}", "--latents", "8,16", "--k", "4,16", "--out", "{tmp}"], "cannot exceed"),
        (["eval", "{tmp}", "{store}"], "has no config.json"),
        (["eval", "{store}", "{missing}"], "does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_a_sentence(
    args: list[str], message: str, store: Path, tmp_path: Path
) -> None:
    filled = [a.format(store=store, tmp=tmp_path, missing=tmp_path / "missing") for a in args]
    result = runner.invoke(app, ["sae", *filled])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_eval_of_an_sae_for_another_dimension_exits_2(trained: tuple[Path, str], tmp_path: Path) -> None:
    [checkpoint] = checkpoints(trained[0])
    path = tmp_path / "wide.npy"
    np.save(path, np.ones((10, 16), dtype=np.float32))
    result = runner.invoke(app, ["sae", "eval", str(checkpoint), str(path)])
    assert result.exit_code == 2
    assert "takes 32-dimensional embeddings" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_asking_for_cuda_without_it_exits_2(store: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "sae",
            "train",
            str(store),
            "--latents",
            "64",
            "--k",
            "4",
            "--out",
            str(tmp_path),
            "--device",
            "cuda",
        ],
    )
    assert result.exit_code == 2
    assert "CUDA is not available" in result.stderr
