"""default_train_size: the rule that sizes an SAE and its training from the corpus when the user does not."""

from __future__ import annotations

import pytest

from featurelens.sae import default_train_size
from featurelens.sae.sizing import LATENTS_PER_K, MAX_EPOCHS, ROWS_PER_LATENT, TARGET_SAMPLES


@pytest.mark.parametrize(
    ("n_rows", "k", "num_latents", "epochs"),
    [
        # The demo's corpus: 11,636 abstracts, 10,472 training rows: the sparsity floor, 32 * k.
        (11_636, 32, 1_024, 96),
        (100_000, 32, 1_792, 12),
        (270_000, 64, 4_800, 5),
        (1_000_000, 64, 17_984, 2),
        # Tiny corpora: the floor of 32 * k latents and the cap on epochs.
        (1_000, 32, 1_024, 200),
        (1_000, 64, 2_048, 200),
        (10, 8, 256, 200),
    ],
)
def test_the_size_rule_on_a_few_corpus_sizes(n_rows: int, k: int, num_latents: int, epochs: int) -> None:
    size = default_train_size(n_rows, k=k)
    assert (size.num_latents, size.epochs) == (num_latents, epochs)


@pytest.mark.parametrize("n_rows", [5_000, 11_636, 50_000, 123_457, 2_000_000])
def test_the_rule_leaves_at_least_50_training_rows_per_latent_and_about_a_million_rows_seen(
    n_rows: int,
) -> None:
    size = default_train_size(n_rows, k=8)
    n_train = n_rows - round(n_rows * 0.1)
    assert size.num_latents % 64 == 0
    assert n_train / size.num_latents >= ROWS_PER_LATENT or size.num_latents == LATENTS_PER_K * 8
    assert size.epochs == min(MAX_EPOCHS, max(1, -(-TARGET_SAMPLES // n_train)))


def test_the_held_out_rows_do_not_count_towards_the_size() -> None:
    assert default_train_size(32_000, k=4, val_fraction=0.0).num_latents == 640
    assert default_train_size(32_000, k=4, val_fraction=0.5).num_latents == 320


def test_a_small_corpus_gets_the_sparsity_floor_rather_than_dense_latents() -> None:
    # 10,472 training rows would allow 192 latents; at k = 32 each would fire on 1 document in 6.
    size = default_train_size(11_636, k=32)

    assert size.num_latents == LATENTS_PER_K * 32
    assert 32 / size.num_latents <= 1 / 32


@pytest.mark.parametrize(
    ("n_rows", "k", "val_fraction", "message"),
    [
        (0, 8, 0.1, "n_rows must be a positive integer"),
        (100, 0, 0.1, "k must be a positive integer"),
        (100, 8, 1.0, r"val_fraction must be in \[0, 1\)"),
    ],
)
def test_the_size_rule_refuses_bad_input_with_a_sentence(
    n_rows: int, k: int, val_fraction: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        default_train_size(n_rows, k=k, val_fraction=val_fraction)
