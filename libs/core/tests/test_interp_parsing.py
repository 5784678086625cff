"""Reading labels and scores out of realistic LLM answers (fixtures/llm: real response shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurelens.interp.parsing import MAX_LABEL_CHARS, LabelParseError, parse_label, parse_predictions

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "llm"


def answer(name: str) -> str:
    """The assistant's text in a recorded chat.completion response."""
    response = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert response["object"] == "chat.completion"
    return str(response["choices"][0]["message"]["content"])


@pytest.mark.parametrize(
    ("fixture", "label"),
    [
        ("interpreter_clean", "Weak gravitational lensing shear measurements"),
        ("interpreter_fenced", "Localisation of fast radio bursts"),
        ("interpreter_prose", "Exoplanet atmospheres from transmission spectra"),
        ("interpreter_label_line", "Dust attenuation in high-redshift galaxies"),
        ("interpreter_bare_quoted", "Cosmic microwave background polarization"),
    ],
)
def test_a_label_is_read_from_every_honest_form_of_answer(fixture: str, label: str) -> None:
    assert parse_label(answer(fixture)) == label


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("interpreter_refusal", "declined"),
        ("interpreter_truncated", "no label"),
        ("interpreter_empty_label", "no label"),
    ],
)
def test_an_answer_without_a_label_raises_with_an_excerpt_instead_of_inventing_one(
    fixture: str, reason: str
) -> None:
    text = answer(fixture)

    with pytest.raises(LabelParseError, match=reason) as raised:
        parse_label(text)

    assert raised.value.excerpt
    assert text.startswith(raised.value.excerpt.rstrip("…")[:40])


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ('{"Label": "X-ray binaries"}', "X-ray binaries"),
        ('```\n{"label": "Gamma-ray bursts"}', "Gamma-ray bursts"),
        ("The label is: galaxy mergers.", "galaxy mergers"),
        ("label = 'Stellar streams'", "Stellar streams"),
        ("{'label': \"Earth's magnetosphere\"}", "Earth's magnetosphere"),
        ('{"label": "Tidal disruption events", "reason": "all discuss TDEs"', "Tidal disruption events"),
        ('{"label": "\\u201cHot Jupiters\\u201d!"}', "Hot Jupiters"),
        ("  Galaxy   cluster\tmass calibration  ", "Galaxy cluster mass calibration"),
    ],
)
def test_quotes_markdown_and_trailing_punctuation_are_stripped(text: str, label: str) -> None:
    assert parse_label(text) == label


@pytest.mark.parametrize(
    "text",
    ["", "   ", "Sure! Here is the label:", "I cannot help with that.", '{"label": "N/A"}', '{"label": 42}'],
)
def test_empty_placeholder_and_preamble_answers_hold_no_label(text: str) -> None:
    with pytest.raises(LabelParseError):
        parse_label(text)


def test_a_long_label_is_cut_at_a_word_boundary() -> None:
    label = parse_label(json.dumps({"label": "spectroscopic " * 30}))

    assert len(label) <= MAX_LABEL_CHARS
    assert label.split() == ["spectroscopic"] * len(label.split())


CLEAN = (0.9, 0.0, 0.0, 0.7, 0.1, 0.0, 1.0, 0.0, 0.3, 0.0)


@pytest.mark.parametrize("fixture", ["predictor_clean", "predictor_fenced"])
def test_scores_from_0_to_10_become_values_from_0_to_1_in_document_order(fixture: str) -> None:
    assert parse_predictions(answer(fixture), 10) == pytest.approx(CLEAN)


def test_an_answer_mapping_ids_to_scores_is_read_too() -> None:
    assert parse_predictions(answer("predictor_mapping"), 10) == pytest.approx(
        (0.7, 0.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.2, 0.0)
    )


def test_a_cut_off_answer_keeps_its_complete_entries_and_the_rest_are_unparsed() -> None:
    values = parse_predictions(answer("predictor_truncated"), 10)

    assert values[:6] == pytest.approx((0.8, 0.0, 0.0, 0.6, 0.0, 0.0))
    assert values[6:] == (None, None, None, None)


def test_bad_entries_are_unparsed_never_zero() -> None:
    values = parse_predictions(answer("predictor_messy"), 10)

    # id 2 twice, 3 out of range (12), 4 not a number, 5 missing, 7 negative, 8 null, 10 missing;
    # id 11 does not exist and is ignored.
    assert values == (0.8, None, None, None, None, 0.45, None, None, 0.0, None)


def test_a_refusal_leaves_every_document_unparsed() -> None:
    assert parse_predictions(answer("predictor_refusal"), 10) == (None,) * 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[3, 4, 5]", (0.3, 0.4, 0.5)),
        ("[3, 4]", (None, None, None)),
        ('{"predictions": [{"id": "2", "score": "7"}]}', (None, 0.7, None)),
        ('{"predictions": [{"document": 1, "activation": 10}]}', (1.0, None, None)),
        ('{"predictions": [{"id": 1, "score": NaN}, {"id": 2, "score": true}]}', (None, None, None)),
        ("not json at all", (None, None, None)),
    ],
)
def test_other_answer_shapes(text: str, expected: tuple[float | None, ...]) -> None:
    assert parse_predictions(text, 3) == pytest.approx(expected)


def test_no_documents_give_no_values_and_a_negative_count_is_refused() -> None:
    assert parse_predictions('{"predictions": []}', 0) == ()
    with pytest.raises(ValueError, match="negative"):
        parse_predictions("{}", -1)
