"""`make eval`: `featurelens eval all --quick` on the astro corpus, on the embedded stack of `make demo`.

Starts the embedded server on the demo's data folder (.featurelens/demo: its SAE, index, labels and
families) and runs the CLI against it, so the report records the exact command a user would type.
The scaling sweep trains on the demo's MiniLM embedding store. Run `make demo` first. With
FEATURELENS_LLM_BASE_URL set (as for the demo), steering also runs the paper's LLM judge and the
LLM rewrite through that endpoint (`--llm-judge`).

Steering queries are the titles of held-out papers (``featurelens.corpus.held_out``), which must
not be in the index, or a query would find itself: `make demo` leaves them out of its index (and
takes them out of an index made before that rule).

    python scripts/eval.py [--out FOLDER] [--full] [-- any other `featurelens eval all` options]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

# The demo's paths and corpus, from the script beside this one (its folder is on sys.path).
from demo import CORPUS, CORPUS_FILE, LLM_BASE_URL, ROOT, STORE, WORK, server_env

from featurelens.kit.launcher import HostStartError, start_embedded


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default .featurelens/eval/<time>)"
    )
    parser.add_argument("--full", action="store_true", help="the full size instead of --quick")
    parser.add_argument("rest", nargs="*", help="more options for `featurelens eval all`")
    args = parser.parse_args()
    for needed in (WORK / "sae.json", STORE, CORPUS_FILE):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `make demo` first")
    out = args.out or ROOT / ".featurelens" / "eval" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    env = server_env()
    llm = ["--llm-judge", "--llm-base-url", LLM_BASE_URL] if LLM_BASE_URL else []
    print("starting the embedded server on the demo's data (loading all-MiniLM-L6-v2)...", flush=True)
    try:
        with start_embedded(data_dir=WORK, env=env, log_path=WORK / "eval-server.log") as host:
            command = [
                str(Path(sys.executable).with_name("featurelens")),
                *("eval", "all", "--corpus", CORPUS, "--corpus-path", str(CORPUS_FILE)),
                *("--embeddings", str(STORE), "--out", str(out), "--address", host.address),
                *([] if args.full else ["--quick"]),
                *llm,
                *args.rest,
            ]
            code = subprocess.call(command)
    except HostStartError as error:
        raise SystemExit(str(error)) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
