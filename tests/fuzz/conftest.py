"""Fixtures of the fuzz suite: the one server it attacks and the count of what it sent.

The profiles live in ``fuzz_profiles``; the terminal summary reports how many calls and request
messages each profile sent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# importlib mode puts no test folder on sys.path: make this folder's helpers importable.
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from fuzz_messages import api_services  # noqa: E402
from fuzz_profiles import Tally  # noqa: E402
from fuzz_server import FuzzServer, start_fuzz_server  # noqa: E402

TALLY = pytest.StashKey[Tally]()


@pytest.fixture(scope="session")
def fuzz_tally(pytestconfig: pytest.Config) -> Tally:
    return pytestconfig.stash.setdefault(TALLY, Tally())


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    """Every installed service in one child process, on prepared data, for the whole suite."""
    names = [service.full_name for service in api_services()]
    with start_fuzz_server(tmp_path_factory.mktemp("fuzz"), names) as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    tally = config.stash.get(TALLY, None)
    if tally is None or not tally.calls:
        return
    terminalreporter.write_sep("-", "fuzz suite: what was sent")
    for profile in sorted(tally.calls):
        terminalreporter.write_line(
            f"{profile}: {tally.calls[profile]:,} calls, {tally.messages[profile]:,} request messages, "
            f"{len(tally.rpcs[profile])} RPCs"
        )
    for key in sorted(k for k in tally.outcomes if k.startswith("fuzz-")):
        counts = ", ".join(f"{code} {n}" for code, n in tally.outcomes[key].most_common())
        terminalreporter.write_line(f"  {key}: {counts}")
    for rpc_id, (count, example) in sorted(tally.cut.items()):
        terminalreporter.write_line(f"  sentences the kit had to cut, {rpc_id}: {count}, e.g. {example!r}")
