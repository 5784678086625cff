"""One LabelFamilies call: name each family from its members' stored labels and stream each name.

1. The request is checked before any work (the families, the model and endpoint, the budget);
   the SAE must exist (NOT_FOUND from the sae service) and every member be one of its latents.
2. The members' stored labels are read at once. A family none of whose members has a label is
   streamed straight away with an empty label and a line saying why: the job goes on.
3. The others are named through the LLM (the job's interpreter model, through a ``ChatClient``
   made like a LabelFeatures job's: the same answer cache, prices, budget and endpoint rules) or,
   without one, offline from the labels (``featurelens.interp.family_names``). ``run_job`` keeps
   at most ``concurrency`` families in flight and stops cleanly at the budget.
4. Nothing is stored: the family service keeps the names with its families.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from featurelens.interp.family_names import FamilyMembers, LlmFamilyNamer, offline_family_name
from featurelens.interp.job import EventKind, JobEvent, run_job
from featurelens.interp.llm import ChatClient
from featurelens.interp.types import Interpretation, Usage
from featurelens.kit import fields
from featurelens.kit.progress import Stopwatch
from featurelens.services.labelling import validation
from featurelens.services.labelling.dependencies import Peers
from featurelens.services.labelling.jobs import is_fatal, spend_line
from featurelens.services.labelling.labellers import EMBEDDING, LabellerFactory
from featurelens.services.labelling.labels import Labels
from featurelens.v1 import labelling_pb2

logger = logging.getLogger(__name__)

#: Features whose labels one read of the label store asks for.
READ_BATCH = 10_000


@dataclass
class FamilyTally:
    """Counts of one job, for its progress messages."""

    total: int
    named: int = 0
    unnamed: int = 0

    @property
    def done(self) -> int:
        return self.named + self.unnamed


class FamilyLabelJob:
    """Runs LabelFamilies requests."""

    def __init__(
        self, peers: Peers, labels: Labels, labellers: LabellerFactory, concurrency: int, domain: str
    ) -> None:
        self.peers = peers
        self.labels = labels
        self.labellers = labellers
        self.concurrency = concurrency
        self.default_domain = domain

    async def run(
        self, request: labelling_pb2.LabelFamiliesRequest
    ) -> AsyncIterator[labelling_pb2.LabelFamiliesResponse]:
        validation.sae_id(request.sae_id)
        families = validation.families(request.families)
        # No predictor: a family's name is not scored, so the plan names none that would need pricing.
        plan = self.labellers.plan(
            request.llm_base_url, request.interpreter_model, EMBEDDING, request.budget_usd
        )
        domain = fields.domain(request.domain, self.default_domain)
        sae = await self.peers.sae_facts(request.sae_id)
        validation.check_family_latents(families, sae.num_latents, sae.sae_id)

        found = await self._stored_labels(sae.sae_id, families)
        members = [
            FamilyMembers(
                family.family_id,
                found.get(family.parent, ""),
                tuple(found.get(child, "") for child in family.children),
            )
            for family in families
        ]
        sae_labelled = bool(found) or await self.labels.has(sae.sae_id)

        client = plan.chat_client()
        try:
            describe = (
                f"{plan.interpreter_model} at {plan.endpoint}, budget ${plan.budget_usd:g}"
                if client is not None
                else "the offline namer (from the members' labels)"
            )
            watch = Stopwatch()
            tally = FamilyTally(total=len(members))
            yield self._message(
                watch,
                tally,
                client,
                f"naming {len(members):,} families of SAE {sae.sae_id!r} with {describe}",
            )
            for family, wanted in zip(members, families, strict=True):
                if not family.has_labels:
                    tally.unnamed += 1
                    reason = _no_labels_reason(len(wanted.members), sae.sae_id, sae_labelled)
                    yield self._message(
                        watch,
                        tally,
                        client,
                        f"family {family.family_id!r} not named: {reason}",
                        family.family_id,
                    )
            named = [index for index, family in enumerate(members) if family.has_labels]
            namer = LlmFamilyNamer(client, plan.interpreter_model) if client is not None else None

            async def name_one(index: int) -> Interpretation:
                if namer is None:
                    return Interpretation(offline_family_name(members[index]))
                return await namer.name(members[index], domain)

            budget_stop = ""
            async for event in run_job(named, name_one, self.concurrency, is_fatal):
                if event.kind is EventKind.BUDGET:
                    budget_stop = event.reason
                    continue
                yield self._report(event, members, watch, tally, client, plan.interpreter_model)
            line = f"named {tally.named:,} of {tally.total:,} families ({tally.unnamed:,} not named)"
            if client is not None:
                line += f"; {spend_line(client.stats.usage)}"
            if budget_stop:
                line = f"stopped at the budget ({budget_stop}); " + line
            final = self._message(watch, tally, client, line)
            final.budget_exhausted = bool(budget_stop)
            yield final
        finally:
            if client is not None:
                await client.aclose()

    async def _stored_labels(
        self, sae_id: str, families: Sequence[validation.FamilyRequest]
    ) -> dict[int, str]:
        """The stored label of every member that has one, by feature."""
        wanted = sorted({member for family in families for member in family.members})
        found: dict[int, str] = {}
        for start in range(0, len(wanted), READ_BATCH):
            for record in await self.labels.get(sae_id, wanted[start : start + READ_BATCH]):
                if record.label.strip():
                    found[record.feature] = record.label
        return found

    def _report(
        self,
        event: JobEvent[Interpretation],
        members: Sequence[FamilyMembers],
        watch: Stopwatch,
        tally: FamilyTally,
        client: ChatClient | None,
        model: str,
    ) -> labelling_pb2.LabelFamiliesResponse:
        family_id = members[event.feature].family_id
        if event.kind is EventKind.LABELLED and event.outcome is not None:
            tally.named += 1
            label = event.outcome.label
            response = self._message(watch, tally, client, f"family {family_id!r}: {label!r}", family_id)
            response.label = label
            response.interpreter_model = model
            return response
        tally.unnamed += 1
        return self._message(
            watch, tally, client, f"family {family_id!r} not named: {event.reason}", family_id
        )

    def _message(
        self, watch: Stopwatch, tally: FamilyTally, client: ChatClient | None, line: str, family_id: str = ""
    ) -> labelling_pb2.LabelFamiliesResponse:
        spend = client.stats.usage if client is not None else Usage()
        return labelling_pb2.LabelFamiliesResponse(
            progress=watch.progress("name", tally.done, tally.total, line),
            family_id=family_id,
            llm_calls=spend.calls,
            cache_hits=spend.cache_hits,
            cost_usd=spend.cost_usd,
        )


def _no_labels_reason(members: int, sae_id: str, sae_labelled: bool) -> str:
    """Why a family got no name: its members are unlabelled, or the whole SAE is."""
    if not sae_labelled:
        return f"SAE {sae_id!r} has no labels at all; label its features first with LabelFeatures"
    return f"none of its {members:,} members has a stored label; label them first with LabelFeatures"
