"""The SaeService: validates requests (``validation.py``), runs the SAE library, converts the answers
(``convert.py``).

Inference (encode, decode, steer, directions) runs on one worker thread, so the event loop stays
free and concurrent passes never fight over the cores; Encode calls are micro-batched per SAE
(``batcher.py``). Training runs in a thread of its own (``training.py``), one run at a time.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np
import torch
from grpc import aio
from typing_extensions import override

from featurelens.embedding.sources import Source, SourceError, sample_rows
from featurelens.kit import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
)
from featurelens.kit.echo import shown
from featurelens.kit.paths import allowed_path
from featurelens.sae import (
    EpochMetrics,
    SaeCheckpointError,
    SaeConfigError,
    SparseAutoencoder,
    StepMetrics,
    TrainResult,
    steer_additive,
    steer_clamp,
)
from featurelens.services.sae import convert, sources, validation
from featurelens.services.sae.batcher import EncodeBatcher
from featurelens.services.sae.registry import LoadedSae, SaeEntry, SaeRegistry
from featurelens.services.sae.settings import MAX_NUM_LATENTS, MAX_TRAIN_PARAMETERS, MAX_TRAIN_ROWS
from featurelens.services.sae.training import TrainingJob
from featurelens.steering import SteerPlan
from featurelens.store import StoreError
from featurelens.store.vectors import VectorReader
from featurelens.v1 import common_pb2, sae_pb2, sae_pb2_grpc

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SERVICE_NAME = sae_pb2.DESCRIPTOR.services_by_name["SaeService"].full_name


class SaeServicer(sae_pb2_grpc.SaeServiceServicer):
    """Serves the SAEs of a registry: encode, decode, steer, decoder directions, train, list.

    A request with an empty ``sae_id`` uses the registry's default SAE. ``start()`` loads the
    default SAE and warms it up with one encode (health turns SERVING after that, or at once
    when no SAE exists yet).
    """

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(
        self,
        registry: SaeRegistry,
        *,
        max_batch: int = 4096,
        batch_window_ms: float = 1.0,
        batch_max_rows: int = 1024,
        train_data_roots: Sequence[Path] = (),
        max_num_latents: int = MAX_NUM_LATENTS,
        max_train_parameters: int = MAX_TRAIN_PARAMETERS,
        max_train_epochs: int = 1000,
        max_train_batch_size: int = 65_536,
        train_progress_interval_s: float = 0.5,
        inference_threads: int = 1,
        open_vector_store: Callable[[], VectorReader] | None = None,
        max_train_rows: int = MAX_TRAIN_ROWS,
        work_dir: Path | None = None,
    ) -> None:
        """``open_vector_store`` opens the Qdrant store a QdrantSource reads (None: this server has
        none); sources other than an embedding store are sampled to at most ``max_train_rows`` rows
        into ``work_dir`` (default: a ``train-work`` folder next to the models folder)."""
        self.registry = registry
        self.max_batch = max_batch
        self.batch_window_s = batch_window_ms / 1000.0
        self.batch_max_rows = batch_max_rows
        self.train_data_roots = [Path(root) for root in train_data_roots]
        self.train_limits = validation.TrainLimits(
            max_num_latents=max_num_latents,
            max_train_parameters=max_train_parameters,
            max_train_epochs=max_train_epochs,
            max_train_batch_size=max_train_batch_size,
        )
        self.train_progress_interval_s = train_progress_interval_s
        self._open_vector_store = open_vector_store
        self._vector_store: VectorReader | None = None
        self._vector_store_lock = threading.Lock()
        self.max_train_rows = max_train_rows
        self.work_dir = work_dir if work_dir is not None else Path(registry.models_dir).parent / "train-work"
        #: True while a Train call reads its source, before its run starts (one at a time).
        self._preparing = False
        # One inference thread, running torch on ``inference_threads`` threads (0: torch's default,
        # one per core). Serving passes are small: on shared or CPU-limited cores a 2-row encode
        # took 3-12 ms on two OpenMP threads (waiting for the second one) and 0.4 ms on one.
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="sae-infer", initializer=_pin_torch_threads, initargs=(inference_threads,)
        )
        self._batchers: dict[str, tuple[LoadedSae, EncodeBatcher]] = {}
        self._started = False
        #: The current (or last) training run.
        self.training: TrainingJob | None = None

    # -- lifecycle (the kit's Servicer protocol) --------------------------------------------

    def add_to_server(self, server: aio.Server) -> None:
        sae_pb2_grpc.add_SaeServiceServicer_to_server(self, server)

    async def start(self) -> None:
        """Check the device, list the checkpoints, load and warm up the default SAE."""
        device = torch.device(self.registry.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"the sae service is configured for device {self.registry.device!r}, but torch sees no "
                "CUDA device here; set FEATURELENS_SAE_DEVICE=cpu or run it on a GPU host"
            )
        await asyncio.to_thread(self.registry.remove_stale_staging)
        # Start the inference thread now (its initializer pins its torch threads), then put back
        # the process default, which set_num_threads also changed for threads started later
        # (training runs).
        process_threads = torch.get_num_threads()
        await self._infer(torch.get_num_threads)
        torch.set_num_threads(process_threads)
        entries = await asyncio.to_thread(self.registry.scan)
        default = self.registry.default_id()
        if default is not None:
            loaded = await asyncio.to_thread(self.registry.load, default)
            await self.batcher(loaded).encode(np.zeros((1, loaded.sae.d_in), dtype=np.float32))
            logger.info("default SAE %s ready (%d SAEs registered)", default, len(entries))
        else:
            logger.info("no SAE in %s yet; serving (Train creates one)", self.registry.models_dir)
        self._started = True

    async def close(self) -> None:
        job = self.training
        if job is not None and job.running:
            job.cancel()
            await asyncio.to_thread(job.thread.join, 30.0)
        for sae_id, (_, batcher) in list(self._batchers.items()):
            await batcher.close()
            stats = batcher.stats
            logger.info(
                "encode batcher of %s: %d requests, %d rows in %d forward passes (largest %d rows)",
                sae_id, stats.requests, stats.rows, stats.forward_passes, stats.largest_pass_rows,
            )  # fmt: skip
        self._batchers.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._vector_store is not None:
            await asyncio.to_thread(self._vector_store.close)
            self._vector_store = None

    # -- RPCs ---------------------------------------------------------------------------------

    @override
    async def Encode(
        self, request: sae_pb2.EncodeRequest, context: aio.ServicerContext
    ) -> sae_pb2.EncodeResponse:
        return await self.encode(request)

    async def encode(self, request: sae_pb2.EncodeRequest) -> sae_pb2.EncodeResponse:
        """Encode as the RPC does; the embedded search service calls this in process (as ``steer``)."""
        self._require_started()
        validation.check_count(request.vectors.count, "vectors", self.max_batch)
        rows = convert.dense_rows(request.vectors)
        loaded = await self.sae(request.sae_id)
        validation.check_dim(rows.shape[1], loaded, "vectors have")
        values, indices = await self.batcher(loaded).encode(rows)
        return convert.encode_response(loaded.sae_id, values, indices)

    @override
    async def Decode(
        self, request: sae_pb2.DecodeRequest, context: aio.ServicerContext
    ) -> sae_pb2.DecodeResponse:
        self._require_started()
        if not request.rows:
            raise InvalidArgumentError("rows is empty; send at least one sparse row")
        validation.check_count(len(request.rows), "rows", self.max_batch)
        loaded = await self.sae(request.sae_id)
        indices, values = convert.sparse_rows(request.rows, loaded.sae.num_latents, loaded.sae_id)
        vectors = await self._infer(_decode, loaded.sae, indices, values)
        return convert.decode_response(loaded.sae_id, vectors)

    @override
    async def Steer(
        self, request: sae_pb2.SteerRequest, context: aio.ServicerContext
    ) -> sae_pb2.SteerResponse:
        return await self.steer(request)

    async def steer(self, request: sae_pb2.SteerRequest) -> sae_pb2.SteerResponse:
        """Steer as the RPC does; the embedded search service calls this in process (no gRPC hop),
        so both routes share one validation and one steering function."""
        self._require_started()
        vector = convert.dense_vector(request.vector)
        loaded = await self.sae(request.sae_id)
        validation.check_dim(vector.shape[0], loaded, "the vector has")
        plan = validation.steer_plan(request.interventions, loaded)
        steered, before, after = await self._infer(_steer, loaded.sae, vector, plan)
        return convert.steer_response(loaded.sae_id, steered, _cosine(vector, steered), before, after)

    @override
    async def DecoderDirections(
        self, request: sae_pb2.DecoderDirectionsRequest, context: aio.ServicerContext
    ) -> sae_pb2.DecoderDirectionsResponse:
        self._require_started()
        if not request.features:
            raise InvalidArgumentError("features is empty; name at least one latent")
        validation.check_count(len(request.features), "features", self.max_batch)
        loaded = await self.sae(request.sae_id)
        features = list(request.features)
        for feature in features:
            validation.check_feature(feature, loaded)
        directions = await self._infer(_directions, loaded.sae, features)
        return convert.directions_response(loaded.sae_id, directions)

    @override
    async def Train(
        self, request: sae_pb2.TrainRequest, context: aio.ServicerContext
    ) -> AsyncIterator[sae_pb2.TrainResponse]:
        self._require_started()
        source: Source | None = None
        if request.WhichOneof("source") in ("qdrant", "file"):
            opened, limit = await asyncio.to_thread(self._open_source, request)
            rows, dim, described, model_id = min(opened.rows, limit), opened.dim, opened.label, None
            source = opened
        else:
            store_path = self._train_store_path(request.embeddings_path)
            store = await asyncio.to_thread(validation.open_train_store, store_path, request.embeddings_path)
            rows, dim, model_id = len(store), store.dim, store.model_id
            described = f"the store {shown(request.embeddings_path)}"
        sae_cfg, train_cfg = validation.train_configs(
            request,
            rows=rows,
            dim=dim,
            source=described,
            limits=self.train_limits,
            device=self.registry.device,
        )
        if self._preparing or (self.training is not None and self.training.running):
            raise FailedPreconditionError(
                "a training run is already in progress on this server; wait for it to end (one at a time)"
            )
        work_file: Path | None = None
        if source is None:
            embeddings = store.vectors()
        else:
            work_file = self.work_dir / f"rows-{uuid.uuid4().hex}.npy"
            embeddings = await self._sample(source, limit, train_cfg.seed, work_file)
        rows = len(embeddings)
        job = TrainingJob(
            embeddings,
            sae_cfg,
            train_cfg,
            checkpoint_dir=self.registry.staging_dir(),
            embedding_model=model_id,
            progress_interval_s=self.train_progress_interval_s,
        )
        self.training = job
        logger.info(
            "training on %s (%d rows, dim %d): %d latents, k %d, batch %d, up to %d epochs, patience %d",
            described, rows, dim, sae_cfg.num_latents, sae_cfg.k, train_cfg.batch_size,
            train_cfg.epochs, train_cfg.patience,
        )  # fmt: skip
        job.start()
        # The library shrinks a batch larger than the training split to the split.
        batch_size = min(train_cfg.batch_size, rows - round(rows * train_cfg.val_fraction))
        # A client that cancels (or a deadline) ends this generator with CancelledError or
        # GeneratorExit: the finally stops the run before its next step.
        try:
            yield sae_pb2.TrainResponse(
                progress=common_pb2.Progress(
                    stage="prepare",
                    total=0,
                    eta_s=-1.0,
                    message=f"reading {rows:,} rows of dim {dim}; training "
                    f"{sae_cfg.num_latents:,} latents with k={sae_cfg.k} for up to {train_cfg.epochs:,} "
                    "epochs, keeping the epoch with the best validation NMSE",
                ),
                val_nmse=-1.0,
            )
            last: StepMetrics | None = None
            val_nmse = -1.0
            async for event in job.events():
                if isinstance(event, StepMetrics):
                    last = event
                    yield convert.step_response(event, batch_size=batch_size, val_nmse=val_nmse)
                elif isinstance(event, EpochMetrics):
                    val_nmse = event.val_nmse if event.val_nmse is not None else -1.0
                    total = last.total_steps if last is not None else 0
                    yield convert.epoch_response(event, total_steps=total, batch_size=batch_size, last=last)
            result = _training_result(job)
            if result.cancelled:
                raise FailedPreconditionError("the training run was stopped before it finished")
            entry = await asyncio.to_thread(self._register, job, make_default=request.make_default)
        finally:
            if job.running:
                job.cancel()
            if work_file is not None:
                # The run's thread may still map it: unlinking keeps its pages until it lets go.
                work_file.unlink(missing_ok=True)
        is_default = self.registry.default_id() == entry.sae_id
        message = f"trained {entry.sae_id} in {result.steps:,} steps"
        if result.final_val is not None:
            message += f" · val nmse {result.final_val.nmse:.4f}"
        if result.final_train is not None:
            message += f" · train nmse {result.final_train.nmse:.4f}"
        if result.best_epoch is not None:
            # The last validation is at the end of the last epoch run (best_epoch implies one).
            epochs_run = result.val_curve[-1][0] + 1
            message += f" · kept epoch {result.best_epoch + 1} of {epochs_run}"
            if result.stopped_early:
                message += f", stopped early: no better val nmse for {train_cfg.patience} epochs"
        yield sae_pb2.TrainResponse(
            progress=common_pb2.Progress(
                stage="done",
                done=result.steps,
                total=result.total_steps,
                rate_per_s=result.samples_per_s / result.batch_size if result.batch_size else 0.0,
                eta_s=0.0,
                message=message,
            ),
            epoch=max(0, train_cfg.epochs - 1) if last is None else last.epoch,
            loss=last.loss if last is not None else 0.0,
            nmse=result.final_train.nmse if result.final_train is not None else 0.0,
            auxk_loss=last.auxk_loss if last is not None else 0.0,
            val_nmse=result.final_val.nmse if result.final_val is not None else val_nmse,
            dead_fraction=result.dead_fraction,
            result=convert.sae_info(entry, is_default=is_default),
        )

    @override
    async def ListSaes(
        self, request: sae_pb2.ListSaesRequest, context: aio.ServicerContext
    ) -> sae_pb2.ListSaesResponse:
        self._require_started()
        entries = await asyncio.to_thread(self.registry.scan)
        default = self.registry.default_id()
        return sae_pb2.ListSaesResponse(
            saes=[convert.sae_info(entry, is_default=entry.sae_id == default) for entry in entries]
        )

    @override
    async def GetSae(
        self, request: sae_pb2.GetSaeRequest, context: aio.ServicerContext
    ) -> sae_pb2.GetSaeResponse:
        self._require_started()
        sae_id = request.sae_id or await self._default_id()
        entry = await asyncio.to_thread(self.registry.entry, sae_id)
        return sae_pb2.GetSaeResponse(
            sae=convert.sae_info(entry, is_default=self.registry.default_id() == entry.sae_id)
        )

    def _register(self, job: TrainingJob, *, make_default: bool) -> SaeEntry:
        try:
            return self.registry.register(job.checkpoint_dir, make_default=make_default)
        except BaseException:
            shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
            raise

    # -- SAEs and batchers --------------------------------------------------------------------

    async def sae(self, sae_id: str) -> LoadedSae:
        """The loaded SAE named by a request (empty = the default), loading it if needed."""
        sae_id = sae_id or await self._default_id()
        loaded = self.registry.loaded(sae_id)
        if loaded is None:
            loaded = await asyncio.to_thread(self.registry.load, sae_id)
            await self._drop_stale_batchers()
        return loaded

    async def _default_id(self) -> str:
        default = self.registry.default_id()
        if default is None:
            # A checkpoint may have been copied into models_dir since the last scan.
            await asyncio.to_thread(self.registry.scan)
            default = self.registry.default_id()
        if default is None:
            raise FailedPreconditionError(
                "no SAE is registered yet and the request names none; train one with Train "
                "(or copy a checkpoint folder into the models directory)"
            )
        return default

    def batcher(self, loaded: LoadedSae) -> EncodeBatcher:
        """The encode batcher of a loaded SAE (one per SAE, made on first use)."""
        current = self._batchers.get(loaded.sae_id)
        if current is not None and current[0] is loaded:
            return current[1]
        batcher = EncodeBatcher(
            partial(_encode, loaded.sae),
            self._executor,
            max_rows=self.batch_max_rows,
            window_s=self.batch_window_s,
            name=loaded.sae_id,
        )
        self._batchers[loaded.sae_id] = (loaded, batcher)
        if current is not None:
            asyncio.get_running_loop().create_task(current[1].close())
        return batcher

    async def _drop_stale_batchers(self) -> None:
        """Close the batchers of SAEs the registry unloaded (or replaced) to free their weights."""
        for sae_id, (loaded, batcher) in list(self._batchers.items()):
            if self.registry.loaded(sae_id) is not loaded:
                del self._batchers[sae_id]
                await batcher.close()

    async def _infer(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking torch function on the inference thread."""
        call = partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # -- validation ---------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise UnavailableError("the sae service is still loading its default SAE; retry shortly")

    # -- training requests --------------------------------------------------------------------

    def _open_source(self, request: sae_pb2.TrainRequest) -> tuple[Source, int]:
        """The Qdrant or file source of a request, checked, and the rows it is reduced to (blocking)."""
        if request.WhichOneof("source") == "qdrant":
            limit = sources.max_rows(request.qdrant.max_rows, self.max_train_rows, "qdrant.max_rows")
            return sources.open_qdrant(request.qdrant, self._store_for_vectors()), limit
        limit = sources.max_rows(request.file.max_rows, self.max_train_rows, "file.max_rows")
        return sources.open_file(request.file, self.train_data_roots), limit

    def _store_for_vectors(self) -> VectorReader | None:
        """The Qdrant store QdrantSources read, opened on first use; None when the server has none."""
        if self._open_vector_store is None:
            return None
        with self._vector_store_lock:
            if self._vector_store is None:
                self._vector_store = self._open_vector_store()
            return self._vector_store

    async def _sample(self, source: Source, limit: int, seed: int, out: Path) -> np.ndarray:
        """At most ``limit`` rows of ``source`` in a memmap at ``out`` (a uniform sample past it)."""
        self._preparing = True
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            return await asyncio.to_thread(sample_rows, source, max_rows=limit, seed=seed, out=out)
        except (SourceError, StoreError) as error:
            out.unlink(missing_ok=True)
            raise sources.sampling_error(error) from None
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        finally:
            self._preparing = False

    def _train_store_path(self, requested: str) -> Path:
        """The embedding store a Train request names, only if it lies inside a train data root."""
        return allowed_path(
            requested,
            self.train_data_roots,
            field="embeddings_path",
            setting="FEATURELENS_SAE_TRAIN_DATA_ROOTS",
        )


# -- inference (on the worker thread) ---------------------------------------------------------


def _pin_torch_threads(threads: int) -> None:
    """Initializer of the inference thread: torch runs its ops on ``threads`` threads (0: default)."""
    torch.get_num_threads()  # torch sets a thread's count lazily, on first use: do it before overriding
    if threads > 0:
        torch.set_num_threads(threads)


def _encode(sae: SparseAutoencoder, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        code = sae.encode(torch.from_numpy(rows))
        return code.values.float().cpu().numpy(), code.indices.cpu().numpy()


def _decode(sae: SparseAutoencoder, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        device = sae.device
        out = sae.decode(torch.from_numpy(values).to(device), torch.from_numpy(indices).to(device))
        return out.float().cpu().numpy()


def _directions(sae: SparseAutoencoder, features: list[int]) -> np.ndarray:
    with torch.inference_mode():
        return sae.decoder_directions(features).float().cpu().numpy()


def _steer(
    sae: SparseAutoencoder, vector: np.ndarray, plan: SteerPlan
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Clamps first (they re-encode the vector), then the additive shifts, then both codes."""
    with torch.inference_mode():
        original = torch.from_numpy(vector).to(sae.device)
        steered = original
        if plan.clamp_features:
            steered = steer_clamp(sae, steered, plan.clamp_features, plan.clamp_values)
        if plan.add_features:
            steered = steer_additive(sae, steered, plan.add_features, plan.add_weights)
        code = sae.encode(torch.stack([original, steered.to(original.dtype)]))
        values = code.values.float().cpu().numpy()
        indices = code.indices.cpu().numpy()
        steered_np = steered.float().cpu().numpy()
    return steered_np, (values[0], indices[0]), (values[1], indices[1])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    if norms == 0.0:
        return 1.0 if np.array_equal(a64, b64) else 0.0
    return float(np.dot(a64, b64) / norms)


def _training_result(job: TrainingJob) -> TrainResult:
    """The job's result, with library errors mapped to status codes."""
    try:
        return job.result()
    except SaeConfigError as error:
        raise InvalidArgumentError(f"training failed: {error}") from None
    except SaeCheckpointError as error:
        raise FailedPreconditionError(f"training could not write its checkpoint: {error}") from None
    except torch.OutOfMemoryError as error:
        raise ResourceExhaustedError(
            f"training ran out of memory on {job.train_cfg.device}: {error}"
        ) from None
