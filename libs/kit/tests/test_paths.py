"""The one allowed-folders check: one status per kind of refusal, one rule for relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurelens.kit import InvalidArgumentError, NotFoundError, PermissionDeniedError, allowed_path
from featurelens.kit.errors import ServiceError

SETTING = "FEATURELENS_TEST_ROOTS"


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    """Two allowed folders, ``first`` and ``second``, beside a folder ``outside`` that is not allowed."""
    for name in ("first", "second", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "first" / "shared.jsonl").write_text("first\n")
    (tmp_path / "second" / "shared.jsonl").write_text("second\n")
    (tmp_path / "second" / "only-second.jsonl").write_text("second\n")
    (tmp_path / "outside" / "secret.jsonl").write_text("secret\n")
    return [tmp_path / "first", tmp_path / "second"]


def refusal(requested: str, roots: list[Path]) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        allowed_path(requested, roots, field="corpus_path", setting=SETTING)
    return caught.value


def test_an_absolute_path_inside_a_root_is_returned_resolved(roots: list[Path]) -> None:
    path = roots[1] / "sub" / ".." / "only-second.jsonl"

    assert (
        allowed_path(str(path), roots, field="corpus_path", setting=SETTING)
        == (roots[1] / "only-second.jsonl").resolve()
    )


def test_a_relative_path_is_tried_under_every_root_in_order_and_the_first_that_exists_wins(
    roots: list[Path],
) -> None:
    assert allowed_path("shared.jsonl", roots, field="corpus_path", setting=SETTING).read_text() == "first\n"
    assert (
        allowed_path("only-second.jsonl", roots, field="corpus_path", setting=SETTING)
        == (roots[1] / "only-second.jsonl").resolve()
    )


@pytest.mark.parametrize(
    "requested", ["/etc/passwd", "../outside/secret.jsonl", "shared.jsonl/../../outside", "/"]
)
def test_a_path_outside_every_root_is_permission_denied_naming_the_setting(
    roots: list[Path], requested: str
) -> None:
    error = refusal(requested, roots)

    assert isinstance(error, PermissionDeniedError)
    assert str(error) == f"corpus_path {requested!r} is outside the folders this server may read ({SETTING})"


def test_a_symlink_out_of_the_roots_is_permission_denied(roots: list[Path], tmp_path: Path) -> None:
    (roots[0] / "link").symlink_to(tmp_path / "outside", target_is_directory=True)

    assert isinstance(refusal("link/secret.jsonl", roots[:1]), PermissionDeniedError)
    assert isinstance(refusal(str(roots[0] / "link" / "secret.jsonl"), roots), PermissionDeniedError)


def test_a_relative_name_that_escapes_under_one_root_and_is_missing_under_another_is_not_found(
    roots: list[Path], tmp_path: Path
) -> None:
    # Denied under "first", missing under "second": the answer must not tell whether the file
    # outside the roots exists.
    (roots[0] / "link").symlink_to(tmp_path / "outside", target_is_directory=True)

    assert isinstance(refusal("link/secret.jsonl", roots), NotFoundError)


def test_a_symlink_that_stays_inside_the_roots_is_followed(roots: list[Path]) -> None:
    (roots[0] / "alias.jsonl").symlink_to(roots[1] / "only-second.jsonl")

    assert (
        allowed_path("alias.jsonl", roots, field="corpus_path", setting=SETTING)
        == (roots[1] / "only-second.jsonl").resolve()
    )


def test_with_no_roots_every_path_is_permission_denied(tmp_path: Path) -> None:
    error = refusal(str(tmp_path), [])

    assert isinstance(error, PermissionDeniedError)
    assert (
        str(error)
        == f"corpus_path names a file on the server, but this server reads none: {SETTING} is empty"
    )


def test_a_path_inside_the_roots_that_does_not_exist_is_not_found(roots: list[Path]) -> None:
    error = refusal("missing.jsonl", roots)

    assert isinstance(error, NotFoundError)
    assert str(error) == "corpus_path 'missing.jsonl' does not exist on the server"


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("", "corpus_path is empty"),
        ("   ", "corpus_path is empty"),
        ("data\x00.jsonl", "contains a NUL character"),
        ("x" * 256, "has a name of 256 bytes; one part of a path may have at most 255"),
        ("é" * 128, "has a name of 256 bytes"),
        ("a/" * 2100, "corpus_path is 4,200 bytes long; a path may have at most 4,096"),
    ],
)
def test_a_name_that_cannot_be_a_path_is_an_invalid_argument(
    roots: list[Path], requested: str, message: str
) -> None:
    error = refusal(requested, roots)

    assert isinstance(error, InvalidArgumentError)
    assert message in str(error)


def test_a_symlink_loop_is_an_invalid_argument(roots: list[Path]) -> None:
    (roots[0] / "loop").symlink_to(roots[0] / "loop")

    assert isinstance(refusal("loop", roots), InvalidArgumentError)


def test_a_long_path_is_echoed_only_in_part_with_its_length(roots: list[Path]) -> None:
    requested = "/elsewhere/" + "deep/" * 300

    message = str(refusal(requested, roots))

    assert f"{requested[:200]!r}... (1,511 characters)" in message
    assert requested[:300] not in message
