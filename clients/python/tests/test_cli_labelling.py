"""``featurelens label``, ``featurelens features`` and ``featurelens search`` against loopback servers.

The servers are the in-test labelling and search servicers of conftest: five stored labels of
sae-32-k2 (3 'dark matter halos; subhalo', 7 'galaxies', 12 'exoplanet transits', 20
'gravitational waves' with an undefined r, 25 'neural network training'); labelling features
0-9 skips 3 and 7, fails 5 and, with an interpreter model, costs $0.002 for each odd feature.
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from featurelens.cli.main import app
from featurelens.cli.steering import SteerSpecError, parse_intervention
from featurelens.client import Intervention

SAE = "sae-32-k2"
ENDPOINT = "http://127.0.0.1:9/v1"

runner = CliRunner()


# -- featurelens label -----------------------------------------------------------------------------


def test_label_with_an_llm_reports_labels_skips_failures_calls_cache_hits_tokens_and_dollars(
    services_address: str, fake_labelling: Any
) -> None:
    result = runner.invoke(
        app,
        [
            *("label", SAE, "--corpus", "arxiv", "--address", services_address),
            *("--llm-base-url", ENDPOINT, "--interpreter", "gpt-4o-mini", "--predictor", "gpt-4o"),
            *("--budget-usd", "2", "--domain", "astro-ph abstracts", "--seed", "3"),
            *("--top-documents", "8", "--scoring-documents", "24"),
        ],
    )

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "labelled 7 features of sae-32-k2" in out
    assert "2 skipped (already labelled; --overwrite relabels them); 1 failed" in out
    assert "last failure: feature 5: the interpreter's answer could not be parsed" in out
    assert "LLM calls: 4; cache hits: 10; tokens: 4,200; cost: $0.0040" in out
    assert "budget" not in out
    assert "best 5 of the new labels" in out
    assert "topic 9" in out
    assert "topic 0" not in out  # the lowest r of the seven is not among the best five
    assert "feature 5 failed: the interpreter's answer could not be parsed" in result.stderr
    [sent] = fake_labelling.requests["LabelFeatures"]
    assert (sent.llm_base_url, sent.interpreter_model, sent.predictor_model) == (
        ENDPOINT,
        "gpt-4o-mini",
        "gpt-4o",
    )
    assert (sent.budget_usd, sent.domain, sent.seed) == (2.0, "astro-ph abstracts", 3)
    assert (sent.top_documents, sent.scoring_documents, sent.overwrite) == (8, 24, False)


def test_label_says_clearly_when_the_budget_stopped_the_job(
    services_address: str, fake_labelling: Any
) -> None:
    result = runner.invoke(
        app,
        [
            *("label", SAE, "--corpus", "arxiv", "--address", services_address),
            *("--interpreter", "gpt-4o-mini", "--budget-usd", "0.003"),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "labelled 6 features" in result.stdout
    assert "LLM calls: 2; cache hits: 10; tokens: 3,600; cost: $0.0020" in result.stdout
    assert (
        "budget reached: the job stopped because the next LLM call would have passed the budget of "
        "$0.003; the labels finished are kept" in result.stdout
    )


def test_label_offline_names_the_features_asked_for_and_overwrites_on_request(
    services_address: str, fake_labelling: Any
) -> None:
    result = runner.invoke(
        app,
        [
            "label",
            SAE,
            "--corpus",
            "arxiv",
            "--features",
            "3, 7,8",
            "--overwrite",
            "--address",
            services_address,
        ],
    )

    assert result.exit_code == 0, result.output
    assert "labelled 3 features of sae-32-k2" in result.stdout
    assert "0 skipped; 0 failed" in result.stdout
    assert "LLM calls: 0; cache hits: 0; tokens: 0; cost: $0.0000" in result.stdout
    [sent] = fake_labelling.requests["LabelFeatures"]
    assert (list(sent.features), sent.overwrite, sent.interpreter_model, sent.budget_usd) == (
        [3, 7, 8],
        True,
        "",
        0.0,
    )


@pytest.mark.parametrize("features", ["", "1,two", "-1"])
def test_label_refuses_a_malformed_feature_list_with_status_2(
    services_address: str, fake_labelling: Any, features: str
) -> None:
    result = runner.invoke(
        app, ["label", SAE, "--corpus", "arxiv", "--features", features, "--address", services_address]
    )

    assert result.exit_code == 2
    assert "--features takes comma-separated latent ids" in result.stderr
    assert "LabelFeatures" not in fake_labelling.requests


def test_label_with_an_endpoint_the_server_refuses_prints_the_servers_sentence(
    services_address: str,
) -> None:
    result = runner.invoke(
        app,
        [
            *("label", SAE, "--corpus", "arxiv", "--address", services_address),
            *("--llm-base-url", "http://elsewhere.example/v1"),
        ],
    )

    assert result.exit_code == 1
    assert (
        "FAILED_PRECONDITION: the LLM endpoint http://elsewhere.example/v1 is not one this server allows"
        in result.stderr
    )
    assert "Traceback" not in result.output


# -- featurelens features --------------------------------------------------------------------------


def test_features_search_shows_feature_label_score_and_r(services_address: str, fake_labelling: Any) -> None:
    result = runner.invoke(
        app, ["features", "search", "dark matter halos", "--sae", SAE, "--address", services_address]
    )

    assert result.exit_code == 0, result.output
    assert "features of sae-32-k2 matching 'dark matter halos'" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "dark matter halos; subhalo" in line)
    assert [cell.strip() for cell in row.split("│")[1:5]] == [
        "3",
        "dark matter halos; subhalo",
        "0.75",
        "0.83",
    ]
    [sent] = fake_labelling.requests["SearchFeatures"]
    assert (sent.sae_id, sent.top_k, sent.substring) == (SAE, 10, False)


def test_features_search_with_substring_marks_the_substring_matches(
    services_address: str, fake_labelling: Any
) -> None:
    result = runner.invoke(
        app, ["features", "search", "waves", "--substring", "--top-k", "3", "--address", services_address]
    )

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "gravitational waves" in line)
    assert [cell.strip() for cell in row.split("│")[1:5]] == [
        "20",
        "gravitational waves",
        "1.00 (substring)",
        "-",
    ]
    [sent] = fake_labelling.requests["SearchFeatures"]
    assert (sent.sae_id, sent.top_k, sent.substring) == ("", 3, True)


def test_features_search_without_a_match_says_how_to_get_labels(services_address: str) -> None:
    result = runner.invoke(app, ["features", "search", "quasars", "--address", services_address])

    assert result.exit_code == 0, result.output
    assert "no labelled feature matches 'quasars'" in result.stdout
    assert "featurelens label" in result.stdout


def test_features_show_prints_the_label_every_score_the_models_and_the_cost(services_address: str) -> None:
    result = runner.invoke(app, ["features", "show", SAE, "3", "--address", services_address])

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "feature 3 of sae-32-k2: 'dark matter halos; subhalo'" in out
    for expected in (
        "pearson r",
        "0.830",
        "0.750",  # F1
        "0.910 (hard negatives 0.800)",  # AUROC
        "0.820",  # balanced accuracy
        "0.880 (hard negatives 0.700)",  # embedding AUROC
        "1.20% of documents",
        "40 (2 predictions unparsed)",
        "gpt-4o-mini",
        "interp-v1",
        "$0.0021 (1,234 tokens)",
        "2025-06-15",
        "doc-3-0, doc-3-1, doc-3-2",
    ):
        assert expected in out, expected
    assert "top documents" not in out


def test_features_show_with_a_corpus_adds_the_titles_of_the_top_documents(services_address: str) -> None:
    result = runner.invoke(
        app, ["features", "show", SAE, "20", "--corpus", "arxiv", "--address", services_address]
    )

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "undefined" in out
    assert "predictions constant: pearson_r undefined" in out
    assert "top documents of feature 20 in arxiv:" in out
    assert "1. 5.000  doc-0  Title 0" in out
    assert "5. 1.000  doc-4  Title 4" in out


def test_features_show_of_an_unlabelled_feature_exits_1_with_the_servers_sentence(
    services_address: str,
) -> None:
    result = runner.invoke(app, ["features", "show", SAE, "9", "--address", services_address])

    assert result.exit_code == 1
    assert "NOT_FOUND: feature 9 of sae-32-k2 has no label yet" in result.stderr


def test_features_list_shows_the_labels_best_first_across_pages(
    services_address: str, fake_labelling: Any
) -> None:
    result = runner.invoke(app, ["features", "list", SAE, "--address", services_address])

    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[2].strip() for row in rows] == [
        "dark matter halos; subhalo",
        "exoplanet transits",
        "galaxies",
        "neural network training",
        "gravitational waves",
    ]
    assert "showing the first" not in result.stdout
    assert [sent.page_size for sent in fake_labelling.requests["ListLabels"]] == [20]


def test_features_list_filters_by_r_and_stops_at_the_limit(
    services_address: str, fake_labelling: Any
) -> None:
    strong = runner.invoke(app, ["features", "list", SAE, "--min-r", "0.7", "--address", services_address])
    first_two = runner.invoke(app, ["features", "list", SAE, "--limit", "2", "--address", services_address])
    none = runner.invoke(app, ["features", "list", SAE, "--min-r", "0.9", "--address", services_address])

    assert strong.exit_code == 0, strong.output
    assert "exoplanet transits" in strong.stdout
    assert "galaxies" not in strong.stdout
    assert first_two.exit_code == 0, first_two.output
    assert "galaxies" not in first_two.stdout
    assert "showing the first 2; --limit shows more" in first_two.stdout
    assert "sae-32-k2 has no labels with r >= 0.9" in none.stdout
    assert [sent.page_size for sent in fake_labelling.requests["ListLabels"]] == [20, 2, 2, 20]


# -- featurelens search ----------------------------------------------------------------------------


def test_search_steered_by_a_phrase_names_the_feature_it_resolved_to(
    services_address: str, fake_search: Any
) -> None:
    result = runner.invoke(
        app,
        [
            *("search", "cosmology", "--corpus", "arxiv", "--top-k", "3", "--address", services_address),
            *("--steer", "dark matter halos=+4", "--steer", "7=-1.5", "--steer", "family:fam-2=+2"),
            *("--clamp", "9=3"),
        ],
    )

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "steered (cosine to the unsteered query 0.900):" in out
    assert (
        "phrase 'dark matter halos' -> feature 3 'dark matter halos; subhalo' (match 0.75), weight +4.00"
        in out
    )
    assert "feature 7 'galaxies', weight -1.50" in out
    assert "family fam-2 -> feature 12 'exoplanet transits', weight +2.00" in out
    assert "family fam-2 -> feature 20 'gravitational waves', weight +2.00" in out
    assert "feature 9 (unlabelled), clamp 3.00" in out
    assert "  1. 1.000  doc-0  Title 0" in out
    assert "3 hits in 1.5 ms (SAE sae-32-k2)" in out
    sent = fake_search.last_search
    assert [i.WhichOneof("target") for i in sent.interventions] == [
        "phrase",
        "feature",
        "family_id",
        "feature",
    ]
    assert sent.with_rank_changes is False


def test_search_with_explain_and_rank_changes_shows_labels_and_moves(
    services_address: str, fake_search: Any
) -> None:
    result = runner.invoke(
        app,
        [
            *("search", "cosmology", "--corpus", "arxiv", "--top-k", "2", "--address", services_address),
            *("--steer", "2=+1", "--explain", "--rank-changes", "--mode", "hybrid"),
        ],
    )

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "  1. 1.000  doc-0  Title 0  (was 2)" in out
    assert "shared: feature 7 'galaxies' (1.00; families f7-p1, f3-p0)" in out
    assert "fell out of the results:" in out
    assert "was   3  doc-99  Title 99" in out
    assert fake_search.last_search.with_rank_changes is True
    assert fake_search.last_search.explain is True


def test_search_without_steering_asks_for_no_rank_changes(services_address: str, fake_search: Any) -> None:
    result = runner.invoke(
        app, ["search", "cosmology", "--corpus", "arxiv", "--rank-changes", "--address", services_address]
    )

    assert result.exit_code == 0, result.output
    assert "steered" not in result.stdout
    assert "(was" not in result.stdout
    assert fake_search.last_search.with_rank_changes is False


def test_search_with_a_malformed_steer_exits_2_with_the_rule(services_address: str) -> None:
    result = runner.invoke(
        app, ["search", "q", "--corpus", "arxiv", "--steer", "2370", "--address", services_address]
    )

    assert result.exit_code == 2
    assert "--steer takes KEY=WEIGHT" in result.stderr


def test_search_with_a_phrase_that_matches_no_label_prints_the_servers_sentence(
    services_address: str,
) -> None:
    result = runner.invoke(
        app, ["search", "q", "--corpus", "arxiv", "--steer", "quasars=+1", "--address", services_address]
    )

    assert result.exit_code == 1
    assert "NOT_FOUND: no labelled feature matches the phrase 'quasars'" in result.stderr


# -- the --steer grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2370=+5", Intervention(feature=2370, weight=5.0)),
        ("0=-2.5", Intervention(feature=0, weight=-2.5)),
        (" 12 = 3 ", Intervention(feature=12, weight=3.0)),
        ("family:f-12=-2", Intervention(family_id="f-12", weight=-2.0)),
        ("dark matter halos=+4", Intervention(phrase="dark matter halos", weight=4.0)),
        ('"2020"=+3', Intervention(phrase="2020", weight=3.0)),
        ('"family: of galaxies"=1', Intervention(phrase="family: of galaxies", weight=1.0)),
        ("E=mc2=+1", Intervention(phrase="E=mc2", weight=1.0)),
        ("sample size 10=1", Intervention(phrase="sample size 10", weight=1.0)),
    ],
)
def test_a_steer_key_is_a_feature_id_a_family_or_a_phrase(spec: str, expected: Intervention) -> None:
    assert parse_intervention(spec) == expected


def test_a_clamp_spec_clamps() -> None:
    assert parse_intervention("7=2", "clamp", "--clamp") == Intervention(feature=7, weight=2.0, mode="clamp")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("2370", "has no '='"),
        ("2370=lots", "'lots' after the last '=' is not a number"),
        ("2370=nan", "finite"),
        ("=3", "names nothing to steer"),
        ('""=3', "names nothing to steer"),
        ("family:=3", "names no family"),
        ("-5=3", "feature ids are 0 or more"),
    ],
)
def test_a_malformed_steer_spec_is_refused_with_a_sentence(spec: str, reason: str) -> None:
    with pytest.raises(SteerSpecError, match=reason):
        parse_intervention(spec)
