"""Every endpoint of the JSON API, called with a real HTTP client against a running gateway in
front of the real services: the happy path, and the bad inputs each one refuses."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from gateway_testing import RunningGateway

QUERY = "dark matter halos in galaxy clusters"


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The JSON error of a response, checked for its status, code and request id."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def search(http: httpx.Client, gateway: RunningGateway, **fields: Any) -> httpx.Response:
    body = {"corpus": gateway.corpus, "text": QUERY, "sae_id": gateway.sae_id, "top_k": 10} | fields
    return http.post("/api/v1/search", json=body)


# -- health, corpora, SAEs ------------------------------------------------------------------------


def test_health_says_every_service_is_serving(http: httpx.Client) -> None:
    response = http.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "services": dict.fromkeys(["encoder", "sae", "search", "labelling", "family"], "SERVING"),
    }


def test_corpora_lists_the_indexed_corpus_with_its_sae(http: httpx.Client, gateway: RunningGateway) -> None:
    (corpus,) = http.get("/api/v1/corpora").json()["corpora"]

    assert corpus["corpus"] == gateway.corpus
    assert corpus["documents"] == 800
    assert gateway.sae_id in corpus["sae_ids"]


def test_saes_lists_the_default_sae_and_one_sae_has_its_config_and_metrics(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    listed = http.get("/api/v1/saes").json()["saes"]
    one = http.get(f"/api/v1/saes/{gateway.sae_id}").json()

    assert [sae["sae_id"] for sae in listed] == [gateway.sae_id]
    assert listed[0]["is_default"]
    assert one == listed[0]
    assert one["config"]["num_latents"] == 256
    assert one["config"]["k"] == 8
    assert {"train_nmse", "val_nmse", "dead_fraction", "steps"} <= set(one["metrics"])
    assert {"best_epoch", "stopped_early"} <= set(one["metrics"])


def test_an_unknown_sae_is_a_404_with_the_request_id(http: httpx.Client) -> None:
    response = http.get("/api/v1/saes/sae-000000000000", headers={"X-Request-Id": "explorer-42"})

    error = error_of(response, 404, "NOT_FOUND")
    assert error["request_id"] == "explorer-42"


def test_the_density_histogram_counts_every_labelled_feature(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    histogram = http.get(f"/api/v1/saes/{gateway.sae_id}/densities", params={"bins": 10}).json()

    assert histogram["labelled_features"] == gateway.labelled > 0
    assert len(histogram["bins"]) == 10
    assert sum(b["count"] for b in histogram["bins"]) + histogram["never_fire"] == gateway.labelled
    assert all(b["lower"] < b["upper"] <= 0 for b in histogram["bins"])


@pytest.mark.parametrize("bins", [0, 101, "many"])
def test_a_histogram_with_a_bad_bin_count_is_a_400(
    http: httpx.Client, gateway: RunningGateway, bins: object
) -> None:
    response = http.get(f"/api/v1/saes/{gateway.sae_id}/densities", params={"bins": bins})

    error = error_of(response, 400, "INVALID_ARGUMENT")
    assert "bins" in error["message"]


# -- labels ---------------------------------------------------------------------------------------


def test_labels_page_by_score_with_the_services_tokens(http: httpx.Client, gateway: RunningGateway) -> None:
    path = f"/api/v1/saes/{gateway.sae_id}/labels"
    first = http.get(path, params={"page_size": 50}).json()
    second = http.get(path, params={"page_size": 50, "page_token": first["next_page_token"]}).json()
    whole = http.get(path, params={"page_size": 1000}).json()

    assert len(first["labels"]) == 50
    assert first["labels"] + second["labels"] == whole["labels"][:100]
    assert len(whole["labels"]) == gateway.labelled
    assert whole["next_page_token"] == ""


@pytest.mark.parametrize("order", ["density_desc", "density_asc"])
def test_labels_sort_by_density_in_pages(http: httpx.Client, gateway: RunningGateway, order: str) -> None:
    path = f"/api/v1/saes/{gateway.sae_id}/labels"
    seen: list[dict[str, Any]] = []
    token = ""
    while True:
        page = http.get(path, params={"order": order, "page_size": 100, "page_token": token}).json()
        seen += page["labels"]
        token = page["next_page_token"]
        if not token:
            break

    densities = [label["density"] for label in seen]
    assert len(seen) == gateway.labelled
    assert densities == sorted(densities, reverse=order == "density_desc")


@pytest.mark.parametrize("order", ["score", "density_desc"])
def test_a_garbage_page_token_is_a_400(http: httpx.Client, gateway: RunningGateway, order: str) -> None:
    response = http.get(
        f"/api/v1/saes/{gateway.sae_id}/labels", params={"order": order, "page_token": "garbage"}
    )

    error = error_of(response, 400, "INVALID_ARGUMENT")
    assert "page_token" in error["message"]


def test_label_search_finds_features_by_a_phrase(http: httpx.Client, gateway: RunningGateway) -> None:
    some_label = http.get(f"/api/v1/saes/{gateway.sae_id}/labels", params={"page_size": 1}).json()["labels"][
        0
    ]

    matches = http.get(
        f"/api/v1/saes/{gateway.sae_id}/labels/search", params={"q": some_label["label"], "top_k": 5}
    ).json()["matches"]

    assert 0 < len(matches) <= 5
    assert matches[0]["label"]["feature"] == some_label["feature"]


def test_an_empty_label_search_is_a_400(http: httpx.Client, gateway: RunningGateway) -> None:
    response = http.get(f"/api/v1/saes/{gateway.sae_id}/labels/search", params={"q": ""})

    error_of(response, 400, "INVALID_ARGUMENT")


# -- features -------------------------------------------------------------------------------------


def _labelled_family_member(http: httpx.Client, gateway: RunningGateway) -> dict[str, Any]:
    family = http.get(f"/api/v1/saes/{gateway.sae_id}/families/{gateway.families[0]}").json()
    return dict(family["members"][0])


def test_a_feature_page_has_its_label_documents_neighbours_and_families(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    member = _labelled_family_member(http, gateway)

    page = http.get(
        f"/api/v1/saes/{gateway.sae_id}/features/{member['feature']}", params={"neighbours": 5}
    ).json()

    assert page["label"]["feature"] == member["feature"]
    assert page["label"]["label"] == member["label"]
    assert page["corpus"] == gateway.corpus
    activations = [doc["activation"] for doc in page["top_documents"]]
    assert len(activations) == 10
    assert activations == sorted(activations, reverse=True)
    assert page["top_documents"][0]["document"]["title"]
    assert len(page["decoder_neighbours"]) == 5
    assert member["feature"] not in [n["feature"] for n in page["decoder_neighbours"]]
    assert page["cooccurrence_neighbours"] is not None
    assert gateway.families[0] in [family["family_id"] for family in page["families"]]


def test_a_feature_past_the_saes_size_is_a_404_with_the_request_id(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    response = http.get(f"/api/v1/saes/{gateway.sae_id}/features/256")

    error = error_of(response, 404, "NOT_FOUND")
    assert "0 to 255" in error["message"]


def test_an_unknown_feature_is_a_404_with_the_request_id(http: httpx.Client, gateway: RunningGateway) -> None:
    response = http.get(f"/api/v1/saes/{gateway.sae_id}/features/99999/activations")

    error_of(response, 404, "NOT_FOUND")


def test_a_negative_feature_is_a_400(http: httpx.Client, gateway: RunningGateway) -> None:
    error_of(http.get(f"/api/v1/saes/{gateway.sae_id}/features/-1"), 400, "INVALID_ARGUMENT")


def test_a_feature_of_an_unknown_corpus_is_a_404(http: httpx.Client, gateway: RunningGateway) -> None:
    response = http.get(f"/api/v1/saes/{gateway.sae_id}/features/3", params={"corpus": "no-such-corpus"})

    error_of(response, 404, "NOT_FOUND")


def test_the_activation_histogram_counts_a_sample_of_the_firing_documents(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    feature = _labelled_family_member(http, gateway)["feature"]

    histogram = http.get(
        f"/api/v1/saes/{gateway.sae_id}/features/{feature}/activations", params={"sample": 50, "bins": 5}
    ).json()

    assert 0 < histogram["sampled"] <= 50
    assert sum(b["count"] for b in histogram["bins"]) == histogram["sampled"]
    assert histogram["bins"][0]["lower"] == 0


def test_a_text_fires_the_feature_it_is_about(http: httpx.Client, gateway: RunningGateway) -> None:
    feature = _labelled_family_member(http, gateway)["feature"]
    top = http.get(f"/api/v1/saes/{gateway.sae_id}/features/{feature}", params={"top_documents": 1}).json()
    text = top["top_documents"][0]["document"]["title"]

    result = http.post(f"/api/v1/saes/{gateway.sae_id}/features/{feature}/test", json={"text": text}).json()

    assert len(result["active_features"]) == 8
    activations = [f["activation"] for f in result["active_features"]]
    assert activations == sorted(activations, reverse=True)
    if result["fires"]:
        assert result["activation"] > 0
        assert result["active_features"][result["rank"] - 1]["feature"] == feature
    else:
        assert result["activation"] == 0
        assert result["rank"] is None


def test_testing_a_text_without_a_text_is_a_400(http: httpx.Client, gateway: RunningGateway) -> None:
    response = http.post(f"/api/v1/saes/{gateway.sae_id}/features/3/test", json={"txt": "typo"})

    error = error_of(response, 400, "INVALID_ARGUMENT")
    assert "text" in error["message"]


# -- search ---------------------------------------------------------------------------------------


def test_search_returns_hits_and_the_querys_labelled_features(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    result = search(http, gateway, explain=True).json()

    assert [hit["rank"] for hit in result["hits"]] == list(range(1, 11))
    assert result["hits"][0]["document"]["title"]
    assert result["hits"][0]["explanation"]
    assert len(result["query_features"]) == 8
    assert any(feature["label"] for feature in result["query_features"])
    assert result["steered"] == []


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_every_search_mode_answers(http: httpx.Client, gateway: RunningGateway, mode: str) -> None:
    result = search(http, gateway, mode=mode).json()

    assert len(result["hits"]) == 10


def test_sliders_at_zero_give_exactly_the_unsteered_results(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    plain = search(http, gateway).json()
    zero = [{"feature": f["feature"], "weight": 0.0} for f in plain["query_features"]]

    untouched = search(http, gateway, interventions=zero).json()

    assert [hit["document"]["id"] for hit in untouched["hits"]] == [
        hit["document"]["id"] for hit in plain["hits"]
    ]


def test_a_slider_moved_up_reorders_the_hits_and_says_how_each_moved(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    plain = search(http, gateway).json()
    weakest = plain["query_features"][-1]

    steered = search(
        http, gateway, interventions=[{"feature": weakest["feature"], "weight": 2.0}], with_rank_changes=True
    ).json()

    assert [s["feature"] for s in steered["steered"]] == [weakest["feature"]]
    assert steered["steered"][0]["label"] == weakest["label"]
    assert 0 < steered["steer_cosine"] < 1
    assert [h["document"]["id"] for h in steered["hits"]] != [h["document"]["id"] for h in plain["hits"]]
    before = {h["document"]["id"]: h["rank"] for h in plain["hits"]}
    for hit in steered["hits"]:
        assert hit["rank_before"] == before.get(hit["document"]["id"], 0)


def test_a_family_steers_a_search(http: httpx.Client, gateway: RunningGateway) -> None:
    family_id = gateway.families[0]

    result = search(http, gateway, interventions=[{"family_id": family_id, "weight": 1.5}]).json()

    assert {s["family_id"] for s in result["steered"]} == {family_id}


@pytest.mark.parametrize(
    "intervention",
    [
        {"feature": 3, "weight": "NaN"},
        {"feature": 3, "weight": 1e9},
        {"feature": 3, "weight": -1.0, "mode": "clamp"},
        {"feature": 3, "family_id": "f1-p0", "weight": 1.0},
        {"weight": 1.0},
        {"feature": 3, "weight": 1.0, "mode": "sideways"},
        {"feature": 99999, "weight": 1.0},
    ],
    ids=["nan", "absurd", "negative-clamp", "two-targets", "no-target", "bad-mode", "no-such-feature"],
)
def test_a_bad_intervention_is_a_400(
    http: httpx.Client, gateway: RunningGateway, intervention: dict[str, Any]
) -> None:
    body = {
        "corpus": gateway.corpus,
        "text": QUERY,
        "sae_id": gateway.sae_id,
        "interventions": [intervention],
    }
    # NaN is not JSON; browsers' JSON.stringify sends null, Python's json sends the bare word.
    content = httpx.Request("POST", "/", json=body).content.replace(b'"NaN"', b"NaN")

    response = http.post("/api/v1/search", content=content, headers={"Content-Type": "application/json"})

    error_of(response, 400, "INVALID_ARGUMENT")


def test_an_empty_query_is_a_400(http: httpx.Client, gateway: RunningGateway) -> None:
    error_of(search(http, gateway, text=""), 400, "INVALID_ARGUMENT")


def test_an_unknown_corpus_is_a_404(http: httpx.Client, gateway: RunningGateway) -> None:
    error_of(search(http, gateway, corpus="no-such-corpus"), 404, "NOT_FOUND")


def test_an_unknown_family_in_a_search_is_a_client_error(http: httpx.Client, gateway: RunningGateway) -> None:
    response = search(http, gateway, interventions=[{"family_id": "f9999-p0", "weight": 1.0}])

    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


# -- families -------------------------------------------------------------------------------------


def test_families_page_with_the_services_tokens(http: httpx.Client, gateway: RunningGateway) -> None:
    path = f"/api/v1/saes/{gateway.sae_id}/families"
    first = http.get(path, params={"page_size": 2}).json()
    rest = http.get(path, params={"page_size": 1000, "page_token": first["next_page_token"]}).json()

    ids = [f["family_id"] for f in first["families"] + rest["families"]]
    assert ids == gateway.families
    assert all(f["members"] == [] for f in first["families"])


def test_a_family_page_has_its_tree_with_densities_and_labels(
    http: httpx.Client, gateway: RunningGateway
) -> None:
    family = http.get(f"/api/v1/saes/{gateway.sae_id}/families/{gateway.families[0]}").json()

    members = family["members"]
    assert members[0]["feature"] == family["parent_feature"]
    assert members[0]["parent"] is None
    features = {m["feature"] for m in members}
    assert all(m["parent"] in features for m in members[1:])
    assert sorted(family["edges"]) == sorted([m["parent"], m["feature"]] for m in members[1:])
    assert family["children"] == len(members) - 1
    assert all(0 <= m["density"] <= 1 for m in members)
    assert all(math.isfinite(m["label_score"]) for m in members if m["label"])


def test_an_unknown_family_is_a_404_with_the_request_id(http: httpx.Client, gateway: RunningGateway) -> None:
    response = http.get(f"/api/v1/saes/{gateway.sae_id}/families/f9999-p0")

    error_of(response, 404, "NOT_FOUND")


def test_a_garbage_family_page_token_is_a_400(http: httpx.Client, gateway: RunningGateway) -> None:
    response = http.get(f"/api/v1/saes/{gateway.sae_id}/families", params={"page_token": "garbage"})

    error = error_of(response, 400, "INVALID_ARGUMENT")
    assert "page_token" in error["message"]
