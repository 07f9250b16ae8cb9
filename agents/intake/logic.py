"""Intake: validate an exception against the tenant's domain pack and map it to the canonical model."""

from __future__ import annotations

from sentinai.eventstore.events import ExceptionNormalized, ExceptionValidationFailed, TriageRequested
from sentinai.packs import domain
from sentinai.pipeline.agent import Agent, Decision, Emit


class IntakeAgent(Agent):
    name = "intake"
    exception_fields = ("status", "payload", "exception_type", "created_at")

    def load(self, batch, states):
        batch.data["pack"] = domain.tenant_pack(batch.tenant)

    def decide(self, batch, state, event):
        if state["status"] != "received":
            return Decision()  # already taken in (a replayed or repeated event)
        pack: domain.Pack = batch.data["pack"]
        exception_type = event.payload.get("exception_type") or state.get("exception_type")
        payload = state.get("payload") or {}
        reasons = domain.validate(pack, exception_type, payload)
        if reasons:
            return Decision(
                exception={
                    "status": "invalid",
                    "invalid_reasons": reasons,
                    "pack_version": pack.version,
                    "closed_at": batch.now,
                },
                emit=[Emit.of(ExceptionValidationFailed(pack=pack.name, pack_version=pack.version, reasons=reasons))],
            )
        normalized = domain.normalize(pack, exception_type, payload)
        return Decision(
            exception={"status": "normalized", "normalized": normalized, "pack_version": pack.version},
            emit=[
                Emit.of(
                    ExceptionNormalized(
                        pack=pack.name, pack_version=pack.version, exception_type=exception_type, normalized=normalized
                    )
                ),
                Emit.of(TriageRequested(exception_type=exception_type)),
            ],
        )


AGENT = IntakeAgent()
