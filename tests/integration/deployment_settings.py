"""The one rule for deployment files (compose, Kubernetes): a FEATURELENS_ variable must name a
field of the settings class of the service it is given to, and its value must parse."""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from featurelens.kit import ServiceSettings


def settings_class(service: str) -> type[ServiceSettings]:
    """The one ServiceSettings subclass defined in featurelens.services.<service>.settings."""
    module = importlib.import_module(f"featurelens.services.{service}.settings")
    classes = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, ServiceSettings) and cls.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module.__name__} should define one ServiceSettings subclass, found {classes}"
    return classes[0]


def unknown_settings(variables: Mapping[str, object], service: str) -> list[str]:
    """The FEATURELENS_ variables that are no ``FEATURELENS_<SERVICE>_<FIELD>`` of ``service``."""
    cls = settings_class(service)
    prefix = f"FEATURELENS_{service.upper()}_"
    fields = {name.upper() for name in cls.model_fields}
    return [
        key
        for key in variables
        if key.startswith("FEATURELENS_") and not (key.startswith(prefix) and key[len(prefix) :] in fields)
    ]


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_settings(variables: Mapping[str, str], service: str) -> ServiceSettings:
    """The service's settings read from ``variables`` (raises a ValidationError naming a bad value)."""
    with _environment(variables):
        return settings_class(service)()
