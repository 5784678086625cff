"""importlib mode puts no test folder on sys.path: make this folder's helpers, the search tests'
real stack and the core tests' fake OpenAI server importable; the fault tests' fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]
for _folder in (_HERE, _ROOT / "services" / "search" / "tests", _ROOT / "libs" / "core" / "tests"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from fault_host import redis_server  # noqa: E402, F401  (a fixture, taken by name)
