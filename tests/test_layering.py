"""The layering contracts (``[tool.importlinter]`` in pyproject.toml) cover every package.

``lint-imports`` only checks the packages it is told about: a new service or core package left
out of ``root_packages`` would escape every contract without a word.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _portions() -> set[str]:
    """Every regular package directly under a distribution's ``featurelens`` namespace, and every
    service under ``featurelens.services``."""
    found = set()
    for init in ROOT.glob("*/**/src/featurelens/*/__init__.py"):
        if ".venv" not in init.parts:
            found.add(f"featurelens.{init.parent.name}")
    for init in ROOT.glob("services/*/src/featurelens/services/*/__init__.py"):
        found.add(f"featurelens.services.{init.parent.name}")
    return found


def _root_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return set(config["root_packages"])


def test_every_package_of_the_repository_is_a_root_package_of_the_layering_contracts() -> None:
    missing = sorted(_portions() - _root_packages())
    assert not missing, f"add these to [tool.importlinter] root_packages in pyproject.toml: {missing}"


def test_every_service_is_in_the_independence_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    services = {name for name in _portions() if name.startswith("featurelens.services.")}
    independent = next(c for c in config["contracts"] if c["type"] == "independence")
    assert services <= set(independent["modules"])
