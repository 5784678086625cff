"""Names that several services take from callers, checked by one rule each."""

from __future__ import annotations

from collections.abc import Callable

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


#: Longest SAE id a caller may send (the sae service mints ids of ~16 characters).
MAX_SAE_ID_CHARS = 256


def sae_id(value: str, collection: Callable[[str], str]) -> str:
    """An SAE id as sent ("" = the sae service's default SAE, which the caller resolves), or
    InvalidArgumentError; ``collection`` is the store's naming of the collection that will hold
    the SAE's records (``schema.labels_collection``, ``schema.families_collection``), so an id
    it cannot name a collection after is refused here rather than failing in the store."""
    if not value:
        return value
    if len(value) > MAX_SAE_ID_CHARS or not value.isprintable():
        raise InvalidArgumentError(f"sae_id {shown(value)} is not an SAE id")
    try:
        collection(value)
    except InvalidQueryError:
        raise InvalidArgumentError(f"sae_id {shown(value)} is not an SAE id (too long)") from None
    return value
