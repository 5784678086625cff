"""A models folder: one checkpoint folder per SAE, named by its sae_id, and the runs in progress.

    <models>/<sae_id>/        config.json + model.safetensors + metrics.json (featurelens.sae.checkpoint)
    <models>/default          the default sae_id, one line (written atomically)
    <models>/.train-*/        runs in progress: hidden, never an SAE, removed when left behind
    <models>/.<sae_id>.old-*/ a checkpoint moved aside while a re-trained one replaces it

A run trains into a staging folder inside the models folder and ``register`` renames it to
``<sae_id>/`` only once it finished: a reader (the sae service, ``featurelens sae eval``) sees the
previous SAE or the whole new one, never a half-written one. Staging inside the folder keeps the
rename on one filesystem, where it is atomic. The sae service's registry and ``featurelens sae
train`` both write through this class, so both lay out and replace SAEs the same way.

The default SAE (the one a request that names none gets) moves only when asked: the first SAE
registered into a folder becomes its default, a later one only with ``make_default``. A folder
with SAEs but no marker (written before markers were, or by hand), or whose marker names an SAE
that is gone, gets its newest SAE marked once (``settle_default``), so training another SAE never
changes the default silently.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from featurelens.sae.checkpoint import (
    CONFIG_FILE,
    MOVED_ASIDE,
    TRAIN_STATE_FILE,
    CheckpointInfo,
    SaeCheckpointError,
    read_checkpoint,
    replace_dir,
)

__all__ = [
    "DEFAULT_MARKER",
    "STAGING_PREFIX",
    "ModelsFolder",
    "created_unix",
    "is_valid_sae_id",
]

logger = logging.getLogger(__name__)

DEFAULT_MARKER = "default"
STAGING_PREFIX = ".train-"
#: What an sae_id may look like: it names a folder, so no separators, no "..", nothing hidden.
_SAE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def is_valid_sae_id(sae_id: str) -> bool:
    """Whether ``sae_id`` can name a folder of a models folder (and so an SAE)."""
    return _SAE_ID.match(sae_id) is not None


def created_unix(info: CheckpointInfo) -> int:
    """When a checkpoint was written: its config.json's ``created``, else the file's modification time."""
    try:
        return int(datetime.fromisoformat(info.created).timestamp())
    except ValueError:
        return int((info.path / CONFIG_FILE).stat().st_mtime)


class ModelsFolder:
    """Staging, registering and replacing SAE checkpoints in one folder, and its default marker.

    Only file operations: which SAE is served, listed or loaded is the caller's business.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- runs in progress ---------------------------------------------------------------------

    def staging_dir(self) -> Path:
        """A fresh path inside the folder for a run's checkpoint (the folder is created, the path not).

        Pass it as ``train_sae(checkpoint_dir=...)``, then ``register`` it once the run finished.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """``staging_dir()`` that is removed on the way out unless it was registered."""
        staging = self.staging_dir()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove_stale(self) -> list[Path]:
        """Clean up after interrupted runs; returns the folders (and files) removed.

        Staging folders go, and so does a temporary file of the ``default`` marker. A checkpoint
        left moved aside by an interrupted replace is put back when its SAE is missing (so no SAE
        is lost), and removed otherwise.
        """
        if not self.path.is_dir():
            return []
        removed: list[Path] = []
        for folder in sorted(self.path.iterdir()):
            if not folder.is_dir():
                # write_default's temporary file, left when the process died before its rename.
                if folder.name.startswith(f".{DEFAULT_MARKER}.tmp-"):
                    folder.unlink(missing_ok=True)
                    removed.append(folder)
                continue
            # save_sae writes a staging checkpoint beside it as "..train-*.tmp-*" first.
            if folder.name.startswith((STAGING_PREFIX, "." + STAGING_PREFIX)):
                logger.warning("removing %s, left behind by an interrupted training run", folder)
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
                continue
            old = MOVED_ASIDE.match(folder.name)
            if old is None:
                continue
            target = self.path / old["name"]
            if target.exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            else:
                logger.warning("restoring %s from %s, left aside by an interrupted replace", target, folder)
                os.rename(folder, target)
        return removed

    # -- registering ----------------------------------------------------------------------------

    def register(self, checkpoint_dir: str | Path, *, make_default: bool = False) -> CheckpointInfo:
        """Move a finished checkpoint to ``<folder>/<sae_id>/`` and return what it holds there.

        The same sae_id means the same config, recipe and data, so a re-trained SAE replaces the
        one there. The optimiser state (train_state.pt, only for resuming) is dropped. The SAE
        becomes the folder's default when ``make_default`` is set or the folder has no SAE yet;
        otherwise the default stays what it was (settled into the marker first). Raises
        SaeCheckpointError with a sentence when the checkpoint is unreadable, its id cannot name
        a folder, or it lies on another filesystem (stage it with ``staging_dir``).
        """
        source = Path(checkpoint_dir)
        info = read_checkpoint(source)
        if not is_valid_sae_id(info.sae_id):
            raise SaeCheckpointError(
                f"The checkpoint at {source} has sae_id {info.sae_id!r}, which cannot name a folder "
                "(letters, digits, '_', '.' and '-' only, not starting with '.' or '-')."
            )
        (source / TRAIN_STATE_FILE).unlink(missing_ok=True)
        previous_default = self.settle_default()
        target = self.path / info.sae_id
        if source.resolve() != target.resolve():
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                replace_dir(source, target)
            except OSError as error:
                raise SaeCheckpointError(
                    f"Cannot move the checkpoint at {source} to {target}: {error.strerror or error}. "
                    "Train into a staging folder of the models folder (ModelsFolder.staging_dir) so "
                    "the move is an atomic rename."
                ) from error
        logger.info("registered SAE %s at %s", info.sae_id, target)
        if make_default or previous_default is None:
            self.write_default(info.sae_id)
            logger.info("SAE %s is the default of %s", info.sae_id, self.path)
        return dataclasses.replace(info, path=target)

    # -- the default marker ---------------------------------------------------------------------

    def read_default(self) -> str | None:
        """The sae_id in the ``default`` marker, or None when there is none or it is unreadable."""
        marker = self.path / DEFAULT_MARKER
        if not marker.is_file():
            return None
        try:
            marked = marker.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            logger.warning("cannot read %s (%s)", marker, error)
            return None
        return marked or None

    def settle_default(self) -> str | None:
        """The folder's default sae_id, fixed in the marker so that only ``write_default`` moves it.

        The marker's id when it names an SAE here. Otherwise (no marker, or the SAE it names is
        gone) the newest readable SAE, by its ``created`` time and then its id, is written into the
        marker with a warning, once. None when the folder holds no SAE. A marker that cannot be
        written (a read-only folder) is logged, and the newest is returned all the same.
        """
        marked = self.read_default()
        if marked is not None and is_valid_sae_id(marked) and (self.path / marked / CONFIG_FILE).is_file():
            return marked  # the usual layout, without reading every checkpoint
        saes = self._saes()
        if marked is not None and any(sae_id == marked for _, sae_id in saes):
            return marked
        if not saes:
            return None
        newest = max(saes)[1]
        reason = (
            "has no default marker"
            if marked is None
            else f"marks {marked!r} as the default, which is not there"
        )
        logger.warning(
            "%s %s; marking its newest SAE, %s, as the default, so that training another does not change it",
            self.path, reason, newest,
        )  # fmt: skip
        try:
            self.write_default(newest)
        except OSError as error:
            logger.warning("cannot write the default marker of %s (%s)", self.path, error)
        return newest

    def _saes(self) -> list[tuple[int, str]]:
        """(created, sae_id) of every readable checkpoint folder."""
        if not self.path.is_dir():
            return []
        found: list[tuple[int, str]] = []
        for folder in self.path.iterdir():
            if folder.name.startswith(".") or not (folder / CONFIG_FILE).is_file():
                continue
            try:
                info = read_checkpoint(folder)
            except SaeCheckpointError:
                continue
            if is_valid_sae_id(info.sae_id):
                found.append((created_unix(info), info.sae_id))
        return found

    def write_default(self, sae_id: str) -> None:
        """Write ``sae_id`` into the ``default`` marker atomically (a reader sees the old or new id)."""
        if not is_valid_sae_id(sae_id):
            raise SaeCheckpointError(f"{sae_id!r} is not a valid sae_id, so it cannot be the default.")
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{DEFAULT_MARKER}.tmp-", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(sae_id + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / DEFAULT_MARKER)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
