"""kill -9 landing while SAE checkpoints are written and registered (the last steps of a training
run, which the slow whole-host test can hardly hit): whatever moment the process dies, the models
folder lists only complete SAEs, each loads and encodes, and the service's start clears what the
killed writer left behind (issue 13, point 3). It found the default marker's temporary file
left behind by a kill, which the cleanup now removes (covered fast in the core's
test_sae_models_folder). Marked slow: each kill costs a fresh child process importing torch
(about 2 s).

The writer is a real child process doing what the sae service does at the end of a run
(``save_sae`` into a staging folder, then ``ModelsFolder.register``), SIGKILLed at varying moments.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fault_host import eventually

from featurelens.services.sae.registry import SaeRegistry

WRITER = r"""
import sys
from pathlib import Path
from featurelens.sae import SaeConfig, SparseAutoencoder, save_sae
from featurelens.sae.models_folder import ModelsFolder

folder = ModelsFolder(Path(sys.argv[1]))
# Big enough (about 8 MB) that a kill often lands in the middle of writing the weights.
sae = SparseAutoencoder(SaeConfig(d_in=256, num_latents=4096, k=8), seed=0)
run = 0
while True:
    staging = folder.staging_dir()
    save_sae(sae, staging, data_fingerprint=f"run-{sys.argv[2]}-{run}")
    folder.register(staging)
    run += 1
"""

KILLS = 3


def saes_in(models: Path) -> int:
    return sum(1 for p in models.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_kill_9_while_checkpoints_are_written_leaves_only_complete_saes_listed(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for kill in range(KILLS):
        before = saes_in(models)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(models), str(kill)])
        try:
            eventually(lambda b=before: saes_in(models) > b, "a checkpoint being registered", 120, 0.001)
            # A different moment of the next write each time.
            time.sleep(0.013 * kill)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(30)

    registry = SaeRegistry(models)
    listed_before_cleanup = {entry.sae_id for entry in registry.scan()}
    registry.remove_stale_staging()
    entries = registry.scan()

    assert not [p.name for p in models.iterdir() if p.name.startswith(".")], "debris left after cleanup"
    assert {entry.sae_id for entry in entries} == listed_before_cleanup
    assert len(entries) >= KILLS
    probe = torch.randn(3, 256)
    for entry in entries:
        loaded = registry.load(entry.sae_id)
        with torch.no_grad():
            code = loaded.sae.encode(probe)
        assert code.indices.shape == (3, 8), entry.sae_id
