"""The FamilyService: checks each request and hands it to the build job, the stored families, the
co-occurrence or the decoders."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from grpc import aio
from typing_extensions import override

from featurelens.families import Cooccurrence, cooccurrence_neighbours, decoder_neighbours
from featurelens.kit import FailedPreconditionError, InvalidArgumentError, fields
from featurelens.kit.pages import page_offset, page_token, query_fingerprint
from featurelens.services.family import convert, validation
from featurelens.services.family.activations import ActivationFiles
from featurelens.services.family.building import BuildJob, cooccurrence_of
from featurelens.services.family.dependencies import Peers, SaeFacts
from featurelens.services.family.matching import top_matches
from featurelens.services.family.settings import FamilySettings
from featurelens.services.family.stored import StoredFamilies
from featurelens.store.families import FamilyRecord
from featurelens.v1 import family_pb2, family_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = family_pb2.DESCRIPTOR.services_by_name["FamilyService"].full_name


def most_specific_first(record: FamilyRecord) -> tuple[int, int, int, str]:
    """Fewest children first; ties by pass, root feature and id, so the order never varies."""
    return (record.size, record.pass_index, record.root, record.family_id)


class FamilyServicer(family_pb2_grpc.FamilyServiceServicer):
    """Builds feature families, keeps them in Qdrant and answers questions about features' relations.

    The server calls ``start()``, which opens the family store; health turns SERVING then.
    """

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(
        self, stored: StoredFamilies, files: ActivationFiles, peers: Peers, settings: FamilySettings
    ) -> None:
        self.stored = stored
        self.files = files
        self.peers = peers
        self.settings = settings
        self.builds = BuildJob(peers, stored, files)

    # -- lifecycle (the kit's Servicer protocol) --------------------------------------------

    def add_to_server(self, server: aio.Server) -> None:
        family_pb2_grpc.add_FamilyServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.stored.open()
        logger.info(
            "family store open; search at %s, sae at %s, labelling at %s; activations in %s",
            self.peers.search.address,
            self.peers.sae.address,
            self.peers.labelling.address,
            self.files.folder,
        )

    async def close(self) -> None:
        await self.peers.close()
        await self.stored.close()

    async def unready_reason(self) -> str | None:
        """None while the family store answers (the kit's readiness probe, ``featurelens.kit.readiness``)."""
        return await self.stored.unready_reason()

    async def _sae(self, requested: str) -> SaeFacts:
        """The SAE a request means ("" = the sae service's default); NOT_FOUND when unknown."""
        return await self.peers.sae_facts(validation.sae_id(requested))

    async def _sae_id(self, requested: str) -> str:
        """The id of the SAE a request means, asking the sae service only for the default."""
        if validation.sae_id(requested):
            return requested
        return (await self.peers.sae_facts("")).sae_id

    # -- RPCs ---------------------------------------------------------------------------------

    @override
    async def BuildFamilies(
        self, request: family_pb2.BuildFamiliesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[family_pb2.BuildFamiliesResponse]:
        async for message in self.builds.run(request):
            yield message

    @override
    async def ListFamilies(
        self, request: family_pb2.ListFamiliesRequest, context: aio.ServicerContext
    ) -> family_pb2.ListFamiliesResponse:
        sae_id = await self._sae_id(request.sae_id)
        size = validation.count(
            request.page_size, "page_size", validation.DEFAULT_PAGE_SIZE, validation.MAX_PAGE_SIZE
        )
        fingerprint = query_fingerprint("ListFamilies", sae_id)
        offset = page_offset(request.page_token, fingerprint)
        await self.stored.require(sae_id)
        records = await self.stored.listing(sae_id)
        page = records[offset : offset + size]
        following = offset + len(page)
        return family_pb2.ListFamiliesResponse(
            families=[convert.family(r) for r in page],
            next_page_token=page_token(following, fingerprint) if following < len(records) else "",
        )

    @override
    async def GetFamily(
        self, request: family_pb2.GetFamilyRequest, context: aio.ServicerContext
    ) -> family_pb2.GetFamilyResponse:
        family_id = validation.family_id(request.family_id)
        sae_id = await self._sae_id(request.sae_id)
        record = await self.stored.get(sae_id, family_id)
        labels = await self.peers.labels(sae_id, record.members)
        return family_pb2.GetFamilyResponse(
            family=convert.family(record), members=convert.members(record, labels)
        )

    @override
    async def FeatureNeighbours(
        self, request: family_pb2.FeatureNeighboursRequest, context: aio.ServicerContext
    ) -> family_pb2.FeatureNeighboursResponse:
        kind = validation.neighbour_kind(request.kind)
        top_k = validation.count(
            request.top_k, "top_k", validation.DEFAULT_NEIGHBOURS, validation.MAX_NEIGHBOURS
        )
        sae = await self._sae(request.sae_id)
        fields.check_latents([request.feature], sae.num_latents, sae.sae_id, "feature")
        if kind == family_pb2.NEIGHBOUR_KIND_COOCCURRENCE:
            cooc = await self._cooccurrence(sae)
            found = cooccurrence_neighbours(cooc, request.feature, top_k)
        else:
            decoder = await self.peers.decoder(sae)
            found = await asyncio.to_thread(decoder_neighbours, decoder, request.feature, top_k)
        features = [int(f) for f in found.indices]
        labels = await self.peers.labels(sae.sae_id, features)
        return family_pb2.FeatureNeighboursResponse(
            neighbours=[
                convert.neighbour(f, float(s), labels) for f, s in zip(features, found.scores, strict=True)
            ]
        )

    @override
    async def MatchFeatures(
        self, request: family_pb2.MatchFeaturesRequest, context: aio.ServicerContext
    ) -> family_pb2.MatchFeaturesResponse:
        top_k = validation.count(request.top_k, "top_k", validation.DEFAULT_MATCHES, validation.MAX_MATCHES)
        source = await self._sae(request.source_sae_id)
        target = await self._sae(request.target_sae_id)
        features = fields.feature_ids(request.features, source.num_latents)
        fields.check_latents(features, source.num_latents, source.sae_id, "features")
        if source.d_in != target.d_in:
            raise InvalidArgumentError(
                f"SAE {source.sae_id!r} decodes to {source.d_in} dimensions and {target.sae_id!r} to "
                f"{target.d_in}: matching needs two SAEs of the same embeddings"
            )
        features = features or list(range(source.num_latents))
        top_k = min(top_k, target.num_latents)
        if len(features) * top_k > self.settings.max_match_results:
            raise InvalidArgumentError(
                f"{len(features):,} features × top_k {top_k} is {len(features) * top_k:,} matches; this "
                f"server answers at most {self.settings.max_match_results:,}: name fewer features"
            )
        source_decoder = await self.peers.decoder(source)
        target_decoder = await self.peers.decoder(target)
        ids, cosines = await asyncio.to_thread(top_matches, source_decoder[features], target_decoder, top_k)
        labels = await self.peers.labels(target.sae_id, ids.ravel().tolist())
        return family_pb2.MatchFeaturesResponse(
            matches=[
                family_pb2.FeatureMatch(
                    source_feature=feature,
                    targets=[
                        convert.neighbour(int(t), float(c), labels)
                        for t, c in zip(ids[row], cosines[row], strict=True)
                    ],
                )
                for row, feature in enumerate(features)
            ]
        )

    @override
    async def FeatureFamilies(
        self, request: family_pb2.FeatureFamiliesRequest, context: aio.ServicerContext
    ) -> family_pb2.FeatureFamiliesResponse:
        features = fields.feature_ids(request.features, validation.MAX_FEATURE_FAMILIES)
        sae = await self._sae(request.sae_id)
        fields.check_latents(features, sae.num_latents, sae.sae_id, "features")
        containing: dict[int, list[FamilyRecord]] = {f: [] for f in features}
        for record in await self.stored.listing(sae.sae_id):
            for member in record.members:
                if member in containing:
                    containing[member].append(record)
        response = family_pb2.FeatureFamiliesResponse()
        for feature in features:
            records = sorted(containing[feature], key=most_specific_first)
            response.features.add(
                feature=feature,
                family_ids=[r.family_id for r in records],
                family_labels=[r.label for r in records],
            )
        return response

    # -- helpers ------------------------------------------------------------------------------

    async def _cooccurrence(self, sae: SaeFacts) -> Cooccurrence:
        """The co-occurrence of the SAE's last build: from its activations file, or read again from
        search for the corpus its families were built from when the file is missing."""
        cooc = await asyncio.to_thread(self.files.load, sae.sae_id, sae.num_latents)
        if cooc is not None:
            return cooc
        await self.stored.require(sae.sae_id)
        records = await self.stored.listing(sae.sae_id)
        if not records:
            raise FailedPreconditionError(
                f"the co-occurrence of SAE {sae.sae_id!r} is not kept on this server and its last build "
                "found no families to say which corpus it read; build its families again"
            )
        corpus = records[0].corpus
        logger.info("reading the activations of SAE %r in %r again for co-occurrence", sae.sae_id, corpus)
        blocks = [block async for block in self.peers.activation_batches(corpus, sae)]
        cooc = await asyncio.to_thread(cooccurrence_of, blocks, sae.num_latents)
        await asyncio.to_thread(self.files.save, sae.sae_id, corpus, cooc)
        return cooc
