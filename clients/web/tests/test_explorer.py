"""The explorer in a real browser (headless Debian Chromium) on a real stack: search with steering
sliders, a feature's page, a family's tree and an SAE's features. Each page's screenshot is saved
under .featurelens/test-output/screenshots/."""

from __future__ import annotations

import re
from urllib.parse import quote

from browser_testing import Screenshots
from gateway_testing import RunningGateway
from playwright.sync_api import Page, expect

QUERY = "dark matter halos of galaxy clusters"


def search(page: Page, explorer: RunningGateway, query: str = QUERY) -> list[str]:
    """Open the search page on a query and wait for its unsteered results; their arXiv ids."""
    page.goto(f"/search?corpus={explorer.corpus}&sae={explorer.sae_id}&q={quote(query)}")
    expect(page.locator("#result-status")).to_have_attribute("data-state", "unsteered")
    return result_ids(page)


def result_ids(page: Page) -> list[str]:
    return [str(x) for x in page.locator("#hits .hit").evaluate_all("hits => hits.map(h => h.dataset.docId)")]


def test_the_search_page_shows_results_with_arxiv_links_and_a_slider_per_query_feature(
    page: Page, explorer: RunningGateway, screenshots: Screenshots
) -> None:
    ids = search(page, explorer)

    assert len(ids) == 10
    first = page.locator("#hits .hit").first
    expect(first.locator("a.title")).to_have_attribute("href", f"https://arxiv.org/abs/{ids[0]}")
    expect(page.locator("#sliders input[type=range]")).not_to_have_count(0)
    slider = page.locator("#sliders input[type=range]").first
    expect(slider).to_have_value("0")
    expect(slider).to_have_attribute("min", "-2")
    screenshots.save(page, "search")


def test_moving_a_slider_up_changes_the_results_and_marks_the_moved_hits(
    page: Page, explorer: RunningGateway, screenshots: Screenshots
) -> None:
    original = search(page, explorer)

    slider = page.locator("#sliders input[type=range]").last
    slider.focus()
    slider.press("End")

    expect(slider).to_have_value("2")
    expect(page.locator("#result-status")).to_have_attribute("data-state", "steered")
    expect(page).to_have_url(re.compile(r"steer=\d+%3A2"))
    assert result_ids(page) != original
    expect(page.locator("#hits .hit:not([data-move='same'])").first).to_be_visible()
    expect(page.locator("#hits .move").first).to_have_text(re.compile(r"^(↑\d+|↓\d+|new|=)$"))
    screenshots.save(page, "search-steered")


def test_all_sliders_back_to_zero_give_exactly_the_original_results(
    page: Page, explorer: RunningGateway
) -> None:
    original = search(page, explorer)
    sliders = page.locator("#sliders input[type=range]")
    for index in (0, sliders.count() - 1):
        sliders.nth(index).focus()
        sliders.nth(index).press("End" if index else "Home")
    expect(page.locator("#result-status")).to_have_attribute("data-state", "steered")

    page.get_by_role("button", name="Set all weights to 0").click()

    expect(page.locator("#result-status")).to_have_attribute("data-state", "unsteered")
    assert result_ids(page) == original
    expect(page).not_to_have_url(re.compile("steer="))


def test_a_steered_search_url_opens_with_its_sliders_set(page: Page, explorer: RunningGateway) -> None:
    search(page, explorer)
    feature = page.locator("#sliders input[type=range]").last.get_attribute("data-target")

    page.goto(f"/search?corpus={explorer.corpus}&sae={explorer.sae_id}&q={quote(QUERY)}&steer={feature}:1.5")

    expect(page.locator(f"#w-feature-{feature}")).to_have_value("1.5")
    expect(page.locator("#result-status")).to_have_attribute("data-state", "steered")


def test_explain_shows_the_features_a_hit_shares_with_the_query(page: Page, explorer: RunningGateway) -> None:
    search(page, explorer)
    hit = page.locator("#hits .hit").first

    hit.get_by_role("button", name="Explain").click()

    expect(hit.get_by_role("button", name="Explain")).to_have_attribute("aria-expanded", "true")
    expect(hit.locator(".explain")).to_be_visible()


def test_a_feature_found_by_phrase_gets_a_slider(page: Page, explorer: RunningGateway) -> None:
    search(page, explorer)
    before = page.locator("#sliders input[type=range]").count()
    label = page.locator("#sliders label").first.inner_text()

    page.get_by_label("Add a feature or family by phrase").fill(label)
    page.get_by_role("button", name="Find").click()
    page.locator("#matches button").last.click()

    expect(page.locator("#sliders input[type=range]")).to_have_count(before + 1)
    expect(page.locator("#sliders input[type=range]").last).to_be_focused()


def test_a_query_feature_opens_its_page_and_a_text_tested_there_fires(
    page: Page, explorer: RunningGateway, screenshots: Screenshots
) -> None:
    search(page, explorer)
    link = page.locator("#sliders .slider a").first
    feature = link.inner_text().removeprefix("feature ")

    link.click()

    expect(page).to_have_url(re.compile(rf"/saes/{explorer.sae_id}/features/{feature}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Feature {feature}")
    expect(page.locator("#top-documents tbody tr")).not_to_have_count(0)
    expect(page.locator("svg.chart rect.bar")).to_have_count(20)
    expect(page.get_by_role("link", name="Steer search with this feature")).to_have_attribute(
        "href", re.compile(rf"steer={feature}%3A0.5")
    )

    page.get_by_label("Test a text: does this feature fire on it?").fill(QUERY)
    page.get_by_role("button", name="Test", exact=True).click()

    expect(page.locator("#probe-result")).to_contain_text("Fires: activation")
    screenshots.save(page, "feature")


def test_a_family_page_draws_the_tree_and_a_node_opens_its_feature(
    page: Page, explorer: RunningGateway, screenshots: Screenshots
) -> None:
    assert explorer.families, "the stack built no family"
    family_id = explorer.families[0]
    page.goto(f"/saes/{explorer.sae_id}/families/{family_id}")

    nodes = page.locator("svg.tree a.node")
    members = page.locator("#members tbody tr")
    # count() does not wait: let the members table render before reading how many rows it has.
    expect(members).not_to_have_count(0)
    expect(nodes).to_have_count(members.count())
    expect(page.get_by_role("link", name="Steer search with this family")).to_have_attribute(
        "href", re.compile(rf"steer={family_id}%3A0.5")
    )
    screenshots.save(page, "family")
    feature = nodes.last.get_attribute("data-feature")

    nodes.last.click()

    expect(page).to_have_url(re.compile(rf"/saes/{explorer.sae_id}/features/{feature}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Feature {feature}")


def test_the_sae_page_lists_features_and_sorts_them_by_density(
    page: Page, explorer: RunningGateway, screenshots: Screenshots
) -> None:
    page.goto(f"/saes/{explorer.sae_id}")
    expect(page.locator("#features tbody tr")).to_have_count(25)
    expect(page.locator("#family-list li")).not_to_have_count(0)

    page.get_by_label("Sort by").select_option("density_desc")

    expect(page.locator("#features tbody")).to_have_attribute("data-order", "density_desc")
    densities = page.locator("#features tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.density))"
    )
    assert densities == sorted(densities, reverse=True)
    screenshots.save(page, "sae")

    page.get_by_role("button", name="Next page").click()
    expect(page.locator(".pager")).to_contain_text("page 2")


def test_an_unknown_sae_shows_the_error_with_its_request_id(page: Page, explorer: RunningGateway) -> None:
    page.goto("/saes/no-such-sae")

    expect(page.get_by_role("alert")).to_contain_text("NOT_FOUND")
    expect(page.get_by_role("alert")).to_contain_text("request id")
