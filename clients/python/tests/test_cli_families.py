"""``featurelens families``, ``features neighbours``, ``sae match`` and family steering in ``search``.

The server is conftest's in-test family servicer: three families of sae-32-k2, f3-p0
'astrophysics' (3 'dark matter halos; subhalo' over 7 'galaxies' and 12 'exoplanet transits';
7 over 20 'gravitational waves' and 25 'neural network training'), f7-p1 nested in it and the
unlabelled f30-p0 (30 over 1, 2 and 4); feature f of sae-32-k2 matches feature 2f of sae-64-k2
with cosine 0.95 - f / 50.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from featurelens.cli.main import app
from featurelens.cli.steering import SteerSpecError, parse_interventions

SAE = "sae-32-k2"
OTHER_SAE = "sae-64-k2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


def _lines(out: str) -> list[str]:
    return [line.rstrip() for line in out.splitlines()]


def _rows(out: str) -> list[list[str]]:
    """The cells of each body row of the rich tables in the output."""
    rows = []
    for line in out.splitlines():
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


# -- featurelens families build --------------------------------------------------------------------


def test_families_build_sends_the_settings_and_prints_the_summary(
    services_address: str, fake_families: Any
) -> None:
    result = runner.invoke(
        app,
        [
            *("families", "build", "--corpus", "arxiv", "--sae", SAE, "--address", services_address),
            *("--threshold", "0.07", "--min-children", "3", "--model", "gpt-4o-mini", "--budget", "0.5"),
        ],
    )

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"families of {SAE} from arxiv" in out
    assert "families" in out
    assert "median 3, mean 3.00" in out
    assert "parent–child 0.420 vs child–child 0.110" in out
    assert "0.630 vs 0.080 with the families shuffled" in out
    assert "3 ($0.0030)" in out
    assert "featurelens families list --sae sae-32-k2" in out
    [sent] = fake_families.requests["BuildFamilies"]
    assert (sent.corpus, sent.sae_id, sent.min_family_size, sent.interpreter_model, sent.budget_usd) == (
        "arxiv",
        SAE,
        3,
        "gpt-4o-mini",
        0.5,
    )
    assert sent.threshold == pytest.approx(0.07)


def test_families_build_refuses_a_zero_threshold_with_status_2(
    services_address: str, fake_families: Any
) -> None:
    result = runner.invoke(
        app, ["families", "build", "--corpus", "arxiv", "--threshold", "0", "--address", services_address]
    )

    assert result.exit_code == 2
    assert "--threshold is a normalised co-occurrence in (0, 1]" in result.stderr
    assert "BuildFamilies" not in fake_families.requests


def test_families_build_of_an_unknown_corpus_prints_the_servers_sentence(services_address: str) -> None:
    result = runner.invoke(app, ["families", "build", "--corpus", "nowhere", "--address", services_address])

    assert result.exit_code == 1
    assert "NOT_FOUND: no corpus named 'nowhere'" in result.stderr


# -- featurelens families list and show ------------------------------------------------------------


def test_families_list_shows_id_label_parent_children_and_density_largest_first(
    services_address: str,
) -> None:
    result = runner.invoke(app, ["families", "list", "--address", services_address])

    assert result.exit_code == 0, result.output
    assert _rows(result.stdout) == [
        ["f3-p0", "astrophysics", "3", "4", "10.00%"],
        ["f30-p0", "(unlabelled)", "30", "3", "1.29%"],
        ["f7-p1", "galaxies and waves", "7", "2", "5.00%"],
    ]


def test_families_list_with_a_limit_says_there_are_more(services_address: str, fake_families: Any) -> None:
    result = runner.invoke(
        app, ["families", "list", "--sae", SAE, "--limit", "1", "--address", services_address]
    )

    assert result.exit_code == 0, result.output
    assert "f3-p0" in result.stdout
    assert "f7-p1" not in result.stdout
    assert "showing the first 1; --limit shows more" in result.stdout
    assert fake_families.requests["ListFamilies"][0].sae_id == SAE


def test_families_show_draws_the_tree_with_labels_densities_and_scores(services_address: str) -> None:
    result = runner.invoke(app, ["families", "show", "f3-p0", "--address", services_address])

    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert lines[0] == (
        "family f3-p0 'astrophysics' of sae-32-k2: 5 features (parent 3 and 4 below it), depth 2, "
        "built from arxiv"
    )
    tree = lines[1:6]
    assert tree[0] == "3 'dark matter halos; subhalo'  density 10.00%  score 0.88"
    # Children sit under their parents, one level deeper each.
    assert tree[1].endswith("7 'galaxies'  density 5.00%  score 0.88")
    assert tree[2].endswith("20 'gravitational waves'  density 1.90%  score 0.88")
    assert tree[3].endswith("25 'neural network training'  density 1.54%  score 0.88")
    assert tree[4].endswith("12 'exoplanet transits'  density 3.08%  score 0.88")
    indent = [len(line) - len(line.lstrip("│├└─ ")) for line in tree]
    assert indent[0] == 0
    assert indent[1] == indent[4] > 0
    assert indent[2] == indent[3] > indent[1]


def test_families_show_with_a_depth_draws_that_many_levels_and_counts_the_rest(
    services_address: str,
) -> None:
    result = runner.invoke(app, ["families", "show", "f3-p0", "--depth", "1", "--address", services_address])

    assert result.exit_code == 0, result.output
    tree = _lines(result.stdout)[1:]
    assert tree[0] == "3 'dark matter halos; subhalo'  density 10.00%  score 0.88"
    assert tree[1].endswith("7 'galaxies'  density 5.00%  score 0.88")
    assert tree[2].endswith("… 2 more below")
    assert tree[3].endswith("12 'exoplanet transits'  density 3.08%  score 0.88")
    assert "gravitational waves" not in result.stdout


def test_families_show_marks_unlabelled_members_and_a_nested_family(services_address: str) -> None:
    unlabelled = runner.invoke(app, ["families", "show", "f30-p0", "--address", services_address])
    nested = runner.invoke(app, ["families", "show", "f7-p1", "--sae", SAE, "--address", services_address])

    assert unlabelled.exit_code == 0, unlabelled.output
    assert "family f30-p0 (unlabelled) of sae-32-k2" in unlabelled.stdout
    assert "2 (unlabelled)  density 13.33%  score -" in unlabelled.stdout
    assert nested.exit_code == 0, nested.output
    assert "depth 1, built from arxiv, nested in f3-p0" in nested.stdout


def test_families_show_of_an_unknown_family_exits_1_with_the_servers_sentence(services_address: str) -> None:
    result = runner.invoke(app, ["families", "show", "f99-p0", "--address", services_address])

    assert result.exit_code == 1
    assert "NOT_FOUND: sae-32-k2 has no family 'f99-p0'" in result.stderr


# -- featurelens features neighbours ---------------------------------------------------------------


def test_features_neighbours_shows_a_table_of_neighbours_with_labels(
    services_address: str, fake_families: Any
) -> None:
    result = runner.invoke(
        app,
        ["features", "neighbours", "12", "--kind", "decoder", "--top-k", "3", "--address", services_address],
    )

    assert result.exit_code == 0, result.output
    assert "neighbours of feature 12 by cosine" in result.stdout
    assert _rows(result.stdout) == [
        ["11", "(unlabelled)", "0.969"],
        ["13", "(unlabelled)", "0.969"],
        ["10", "(unlabelled)", "0.938"],
    ]
    [sent] = fake_families.requests["FeatureNeighbours"]
    assert (sent.feature, sent.top_k) == (12, 3)


def test_features_neighbours_by_cooccurrence_names_labelled_neighbours(services_address: str) -> None:
    result = runner.invoke(
        app, ["features", "neighbours", "6", "--top-k", "2", "--address", services_address]
    )

    assert result.exit_code == 0, result.output
    assert "neighbours of feature 6 by co-occurrence" in result.stdout
    assert "galaxies" in result.stdout
    assert "(unlabelled)" in result.stdout


def test_features_neighbours_refuses_an_unknown_kind_with_status_2(services_address: str) -> None:
    result = runner.invoke(
        app, ["features", "neighbours", "6", "--kind", "semantic", "--address", services_address]
    )

    assert result.exit_code == 2
    assert "--kind must be cooccurrence or decoder" in result.stderr


# -- featurelens sae match -------------------------------------------------------------------------


def test_sae_match_writes_every_match_and_the_histogram_as_json_and_a_png(
    services_address: str, tmp_path: Path
) -> None:
    json_path, png_path = tmp_path / "matches.json", tmp_path / "max-cosines.png"

    result = runner.invoke(
        app,
        [
            *("sae", "match", SAE, OTHER_SAE, "--address", services_address),
            *("--json", str(json_path), "--png", str(png_path)),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "32 features of sae-32-k2 matched" in result.stdout
    assert "showing the first 20" in result.stdout
    report = json.loads(json_path.read_text())
    assert (report["source_sae_id"], report["target_sae_id"], report["top_k"]) == (SAE, OTHER_SAE, 1)
    assert len(report["matches"]) == 32
    assert report["matches"][5] == {
        "source_feature": 5,
        "targets": [{"feature": 10, "cosine": pytest.approx(0.85), "label": ""}],
    }
    histogram = report["max_cosine_histogram"]
    assert len(histogram["bin_edges"]) == len(histogram["counts"]) + 1
    assert (histogram["bin_edges"][0], histogram["bin_edges"][-1]) == (-1.0, 1.0)
    assert sum(histogram["counts"]) == 32
    png = png_path.read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 5_000  # a drawn figure, not an empty file or a bare header


def test_sae_match_of_chosen_features_asks_for_them_and_prints_each(
    services_address: str, fake_families: Any
) -> None:
    result = runner.invoke(
        app,
        ["sae", "match", SAE, OTHER_SAE, "--features", "3,7", "--top-k", "2", "--address", services_address],
    )

    assert result.exit_code == 0, result.output
    [sent] = fake_families.requests["MatchFeatures"]
    assert (list(sent.features), sent.top_k) == ([3, 7], 2)
    assert "2 features of sae-32-k2 matched; max cosine median 0.850" in result.stdout
    assert "showing the first" not in result.stdout


def test_sae_match_with_an_unknown_sae_exits_1_and_writes_nothing(
    services_address: str, tmp_path: Path
) -> None:
    json_path = tmp_path / "matches.json"

    result = runner.invoke(
        app, ["sae", "match", SAE, "sae-nope", "--json", str(json_path), "--address", services_address]
    )

    assert result.exit_code == 1
    assert "NOT_FOUND: no SAE with id 'sae-nope'" in result.stderr
    assert not json_path.exists()


# -- family steering and explanations in featurelens search ----------------------------------------


def test_per_member_reaches_the_wire_for_the_families_of_steer_only(
    services_address: str, fake_search: Any
) -> None:
    result = runner.invoke(
        app,
        [
            *("search", "cosmology", "--corpus", "arxiv", "--top-k", "2", "--address", services_address),
            *("--steer", "family:fam-2=+3", "--steer", "7=-1", "--per-member"),
        ],
    )

    assert result.exit_code == 0, result.output
    sent = fake_search.last_search.interventions
    assert [(i.WhichOneof("target"), i.per_member) for i in sent] == [("family_id", True), ("feature", False)]
    assert "family fam-2 -> feature 12 'exoplanet transits', weight +3.00" in result.stdout


def test_a_family_is_one_direction_without_per_member(services_address: str, fake_search: Any) -> None:
    result = runner.invoke(
        app,
        [
            "search",
            "cosmology",
            "--corpus",
            "arxiv",
            "--steer",
            "family:fam-2=+3",
            "--address",
            services_address,
        ],
    )

    assert result.exit_code == 0, result.output
    assert fake_search.last_search.interventions[0].per_member is False


def test_per_member_without_a_family_to_steer_exits_2(services_address: str) -> None:
    result = runner.invoke(
        app,
        [
            "search",
            "cosmology",
            "--corpus",
            "arxiv",
            "--steer",
            "7=+1",
            "--per-member",
            "--address",
            services_address,
        ],
    )

    assert result.exit_code == 2
    assert "--per-member applies to the families of --steer" in result.stderr


def test_per_member_leaves_clamps_alone() -> None:
    parsed = parse_interventions(["family:f3-p0=+2"], ["family:f7-p1=1"], per_member=True)

    assert [(i.family_id, i.mode, i.per_member) for i in parsed] == [
        ("f3-p0", "additive", True),
        ("f7-p1", "clamp", False),
    ]
    with pytest.raises(SteerSpecError):
        parse_interventions([], ["family:f7-p1=1"], per_member=True)


def test_search_explain_shows_the_families_of_each_shared_feature(services_address: str) -> None:
    result = runner.invoke(
        app,
        [
            "search",
            "galaxies",
            "--corpus",
            "arxiv",
            "--top-k",
            "1",
            "--explain",
            "--address",
            services_address,
        ],
    )

    assert result.exit_code == 0, result.output
    assert "shared: feature 7 'galaxies' (1.00; families f7-p1, f3-p0)" in result.stdout


def test_a_large_family_steered_is_listed_by_its_first_members_and_a_count() -> None:
    from featurelens.cli.search import SHOWN_FAMILY_MEMBERS, steered_lines
    from featurelens.client import SteeredFeature

    family = [SteeredFeature(f, "", 0.1, "additive", 1, family_id="f9-p0") for f in range(9, 29)]
    alone = SteeredFeature(3, "dark matter", -1.0, "additive", 0)

    lines = steered_lines([alone, *family])

    assert lines[0] == "feature 3 'dark matter', weight -1.00"
    assert len(lines) == 1 + SHOWN_FAMILY_MEMBERS + 1
    assert lines[1].startswith("family f9-p0 -> feature 9")
    assert lines[-1] == f"family f9-p0 -> {20 - SHOWN_FAMILY_MEMBERS} more of its 20 features"


def test_cosines_a_rounding_error_past_one_are_counted_in_the_last_bin() -> None:
    from featurelens.cli.sae_match import max_cosine_histogram
    from featurelens.client import CrossSaeMatch, FeatureNeighbour

    matches = [
        CrossSaeMatch(0, (FeatureNeighbour(0, 1.0000001, ""),)),
        CrossSaeMatch(1, (FeatureNeighbour(1, 1.0, ""),)),
        CrossSaeMatch(2, (FeatureNeighbour(2, -1.0000001, ""),)),
    ]

    counts, _edges = max_cosine_histogram(matches)

    assert sum(counts) == 3
    assert counts[-1] == 2
    assert counts[0] == 1
