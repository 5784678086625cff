"""The SAEs on disk: one checkpoint folder per SAE under ``models_dir``, a default, loaded models.

    <models_dir>/<sae_id>/config.json + model.safetensors + metrics.json   (featurelens.sae.checkpoint)
    <models_dir>/default                                                   the default sae_id, one line
    <models_dir>/.train-*/                                                 runs in progress (never listed)

The folder layout, staging, registration and the marker file are featurelens.sae.ModelsFolder's,
shared with ``featurelens sae train``, and so is the rule that the default moves only when asked
(the first SAE of a folder, or one registered with ``make_default``); this module decides what is
listed and loaded, and lets the ``default_sae_id`` setting pin the default.
Listing reads only the small JSON files; weights load on first use and stay on the device in an
LRU of ``max_loaded`` models (the default SAE is never evicted). Loading blocks, so the servicer
calls ``load`` from a worker thread; everything else is cheap and safe from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from featurelens.kit import FailedPreconditionError, NotFoundError
from featurelens.kit.echo import shown
from featurelens.sae import CheckpointInfo, SaeCheckpointError, SparseAutoencoder, load_sae, read_checkpoint
from featurelens.sae.checkpoint import CONFIG_FILE, METRICS_FILE
from featurelens.sae.models_folder import ModelsFolder, created_unix, is_valid_sae_id

logger = logging.getLogger(__name__)

#: Known ids quoted in a NOT_FOUND message.
_IDS_IN_MESSAGES = 5


@dataclass(frozen=True)
class SaeEntry:
    """One SAE on disk: what its config.json and metrics.json say."""

    info: CheckpointInfo
    created_unix: int

    @property
    def sae_id(self) -> str:
        return self.info.sae_id

    @property
    def path(self) -> Path:
        return self.info.path


@dataclass(frozen=True)
class LoadedSae:
    """An SAE's weights on the serving device, with the entry they were loaded from."""

    entry: SaeEntry
    sae: SparseAutoencoder

    @property
    def sae_id(self) -> str:
        return self.entry.sae_id


class SaeRegistry:
    """The checkpoints in ``models_dir`` by sae_id, the default SAE and an LRU of loaded models.

    ``pinned_default`` (the service's ``default_sae_id`` setting) wins over the ``default``
    marker file. A folder with SAEs and no marker gets its newest SAE marked on the first scan
    (``ModelsFolder.settle_default``), so the default never moves unless asked.
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_loaded: int = 4,
        pinned_default: str = "",
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, got {max_loaded}")
        self.models_dir = Path(models_dir)
        self.folder = ModelsFolder(self.models_dir)
        self.device = device
        self.dtype = dtype
        self.max_loaded = max_loaded
        self.pinned_default = pinned_default
        self._loaded: OrderedDict[str, LoadedSae] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._default: str | None = None
        self._read_cache: dict[Path, tuple[tuple[int, int], SaeEntry | None]] = {}

    # -- listing ------------------------------------------------------------------------------

    def scan(self) -> list[SaeEntry]:
        """Every readable checkpoint, newest first; re-resolves the default. Malformed ones are skipped."""
        entries: dict[str, SaeEntry] = {}
        if self.models_dir.is_dir():
            for folder in sorted(self.models_dir.iterdir()):
                if folder.name.startswith(".") or not folder.is_dir():
                    continue
                entry = self._read(folder)
                if entry is None:
                    continue
                if entry.sae_id in entries:
                    logger.warning(
                        "%s holds SAE %s, already found in %s; ignoring it",
                        folder, entry.sae_id, entries[entry.sae_id].path,
                    )  # fmt: skip
                    continue
                entries[entry.sae_id] = entry
        ordered = sorted(entries.values(), key=lambda e: (e.created_unix, e.sae_id), reverse=True)
        with self._lock:
            self._default = self._resolve_default(ordered)
        return ordered

    def entry(self, sae_id: str) -> SaeEntry:
        """The entry of one SAE; NotFoundError naming the id and some known ones."""
        if is_valid_sae_id(sae_id):
            loaded = self._loaded.get(sae_id)
            if loaded is not None:
                return loaded.entry
            # The usual layout first (<models_dir>/<sae_id>/), a full scan only when that fails.
            folder = self.models_dir / sae_id
            if (folder / CONFIG_FILE).is_file():
                entry = self._read(folder)
                if entry is not None and entry.sae_id == sae_id:
                    return entry
            for entry in self.scan():
                if entry.sae_id == sae_id:
                    return entry
        raise NotFoundError(f"unknown SAE {shown(sae_id)}; {self._known_ids()}")

    def _read(self, folder: Path) -> SaeEntry | None:
        """The entry of one folder, re-read only when its JSON files changed (metrics.json holds
        every latent's density, so it can be megabytes); a malformed one is logged once."""
        stamp = (_mtime_ns(folder / CONFIG_FILE), _mtime_ns(folder / METRICS_FILE))
        cached = self._read_cache.get(folder)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        entry = None
        try:
            info = read_checkpoint(folder)
        except SaeCheckpointError as error:
            logger.warning("skipping %s: %s", folder, error)
        else:
            if is_valid_sae_id(info.sae_id):
                entry = SaeEntry(info, created_unix(info))
            else:
                logger.warning("skipping %s: its sae_id %r is not a valid id", folder, info.sae_id)
        self._read_cache[folder] = (stamp, entry)
        return entry

    def _known_ids(self) -> str:
        ids = [entry.sae_id for entry in self.scan()]
        if not ids:
            return "no SAEs are registered yet (train one with Train)"
        shown = ", ".join(ids[:_IDS_IN_MESSAGES])
        more = (
            f" and {len(ids) - _IDS_IN_MESSAGES} more (see ListSaes)" if len(ids) > _IDS_IN_MESSAGES else ""
        )
        return f"known SAEs: {shown}{more}"

    # -- the default --------------------------------------------------------------------------

    def default_id(self) -> str | None:
        """The SAE used when a request names none (resolved at the last scan or registration)."""
        with self._lock:
            return self._default

    def set_default(self, sae_id: str) -> None:
        """Mark an SAE as the default by writing the marker file atomically."""
        self.entry(sae_id)
        self.folder.write_default(sae_id)
        self._warn_if_pinned(sae_id)
        self.scan()

    def _warn_if_pinned(self, sae_id: str) -> None:
        if self.pinned_default and self.pinned_default != sae_id:
            logger.warning(
                "marked %s as the default SAE, but the default_sae_id setting pins %s, which stays in use",
                sae_id, self.pinned_default,
            )  # fmt: skip

    def _resolve_default(self, entries: list[SaeEntry]) -> str | None:
        if self.pinned_default:
            return self.pinned_default
        marked = self.folder.settle_default()
        if marked is None or any(entry.sae_id == marked for entry in entries):
            return marked
        # The marker names a folder whose checkpoint this registry cannot read (logged by _read).
        logger.warning("the default marker names %r, which cannot be loaded; using the newest", marked)
        return entries[0].sae_id if entries else None

    # -- loading ------------------------------------------------------------------------------

    def loaded(self, sae_id: str) -> LoadedSae | None:
        """The loaded model of an SAE if it is in memory (no I/O); marks it recently used."""
        with self._lock:
            loaded = self._loaded.get(sae_id)
            if loaded is not None:
                self._loaded.move_to_end(sae_id)
            return loaded

    def loaded_ids(self) -> list[str]:
        """Ids of the SAEs in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def load(self, sae_id: str) -> LoadedSae:
        """Load an SAE onto the device (blocking; call it from a worker thread), evicting the LRU one."""
        with self._load_lock:
            already = self.loaded(sae_id)
            if already is not None:
                return already
            entry = self.entry(sae_id)
            try:
                sae = load_sae(entry.path, device=self.device, dtype=self.dtype)
            except SaeCheckpointError as error:
                raise FailedPreconditionError(f"SAE {sae_id} cannot be loaded: {error}") from error
            sae.eval()
            sae.requires_grad_(False)
            loaded = LoadedSae(entry, sae)
            with self._lock:
                self._loaded[sae_id] = loaded
                self._evict(keep=sae_id)
            logger.info(
                "loaded SAE %s (d_in %d, %d latents, k %d) on %s",
                sae_id, sae.d_in, sae.num_latents, sae.k, self.device,
            )  # fmt: skip
            return loaded

    def _evict(self, keep: str) -> None:
        """Drop least recently used SAEs beyond max_loaded, never the default nor ``keep``."""
        spared = {self._default, keep}
        while len(self._loaded) > self.max_loaded:
            victim = next((sae_id for sae_id in self._loaded if sae_id not in spared), None)
            if victim is None:
                return
            del self._loaded[victim]
            logger.info("unloaded SAE %s (more than %d loaded)", victim, self.max_loaded)

    # -- registration -------------------------------------------------------------------------

    def staging_dir(self) -> Path:
        """A fresh path under models_dir for a training run to write its checkpoint into."""
        return self.folder.staging_dir()

    def remove_stale_staging(self) -> None:
        """Clean up what interrupted runs (of any process) left in models_dir."""
        self.folder.remove_stale()

    def register(self, checkpoint_dir: Path, *, make_default: bool = False) -> SaeEntry:
        """Move a finished checkpoint to ``<models_dir>/<sae_id>/`` and list it.

        The same sae_id means the same config, recipe and data, so a re-trained SAE replaces the
        one there (and a loaded copy of it is dropped). The optimiser state is not kept. It becomes
        the default only with ``make_default``, or when it is the first SAE of the folder.
        """
        info = self.folder.register(checkpoint_dir, make_default=make_default)
        with self._lock:
            self._loaded.pop(info.sae_id, None)
        if make_default:
            self._warn_if_pinned(info.sae_id)
        self.scan()
        return self.entry(info.sae_id)


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1
