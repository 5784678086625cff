"""Names that several services take from callers, checked by one rule each."""

from __future__ import annotations

from featurelens.kit.echo import shown
from featurelens.kit.errors import InvalidArgumentError
from featurelens.store import schema as store_schema
from featurelens.store.errors import InvalidQueryError


def corpus_name(name: str) -> str:
    """A valid corpus name, or InvalidArgumentError (the store's collection-name rule)."""
    if not name:
        raise InvalidArgumentError("corpus is empty; name the corpus (ListCorpora lists them)")
    try:
        return store_schema.check_collection_name(name)
    except InvalidQueryError:
        raise InvalidArgumentError(
            f"corpus name {shown(name)} is invalid: use 1 to 128 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        ) from None
