"""Policy: apply the tenant's guardrails and match a playbook (or ask for escalation)."""

from __future__ import annotations

from sentinai.eventstore.events import EscalationRequested, PlaybookMatched, PolicyEvaluationCompleted
from sentinai.packs import domain
from sentinai.packs.conditions import exception_view, holds
from sentinai.pipeline.agent import Agent, Decision, Emit


class PolicyAgent(Agent):
    name = "policy"
    exception_fields = ("status", "exception_type", "severity", "normalized", "payload", "closed_at")

    def load(self, batch, states):
        from playbooks_app.models import Playbook, PlaybookStep
        from tools_app.models import Tool

        batch.data["pack"] = domain.tenant_pack(batch.tenant)
        playbooks = list(
            Playbook.objects.filter(tenant_id=batch.tenant_id, is_active=True)
            .order_by("-priority", "name")
            .values("id", "name", "version", "match")
        )
        tools_used: dict[str, set[str]] = {str(p["id"]): set() for p in playbooks}
        for playbook_id, tool in PlaybookStep.objects.filter(
            playbook_id__in=[p["id"] for p in playbooks], action__in=("tool", "notify")
        ).values_list("playbook_id", "tool"):
            tools_used[str(playbook_id)].add(tool)
        batch.data["playbooks"] = playbooks
        batch.data["tools_used"] = tools_used
        batch.data["auto_tools"] = set(
            Tool.objects.filter(tenant_id=batch.tenant_id, is_active=True, auto_approved=True).values_list(
                "name", flat=True
            )
        )

    def decide(self, batch, state, event):
        if state.get("closed_at") is not None:
            return Decision()
        pack: domain.Pack = batch.data["pack"]
        overrides = (batch.tenant.overrides or {}).get("policies") or {}
        approval_severities = set(overrides.get("approval_severities", pack.policies.approval_severities))
        view = exception_view(event.exception_id, state)
        reasons = []
        requires_approval = state.get("severity") in approval_severities
        if requires_approval:
            reasons.append(f"severity {state.get('severity')} needs a human's approval")
        auto_tools = sorted(batch.data["auto_tools"])
        playbook = next((p for p in batch.data["playbooks"] if holds(p["match"], view)), None)
        if playbook is None:
            reasons.append(f"no playbook of domain pack {pack.name!r} matches this {state.get('exception_type')}")
            return Decision(
                emit=[
                    Emit.of(
                        PolicyEvaluationCompleted(
                            playbook_id=None,
                            playbook_name=None,
                            requires_approval=requires_approval,
                            auto_tools=auto_tools,
                            reasons=reasons,
                        )
                    ),
                    Emit.of(EscalationRequested(reason=reasons[-1])),
                ]
            )
        unattended = batch.data["tools_used"][str(playbook["id"])] - batch.data["auto_tools"]
        if unattended:
            requires_approval = True
            reasons.append(f"tools {sorted(unattended)} may not run without a human")
        return Decision(
            exception={"status": "in_progress"},
            emit=[
                Emit.of(
                    PolicyEvaluationCompleted(
                        playbook_id=str(playbook["id"]),
                        playbook_name=playbook["name"],
                        requires_approval=requires_approval,
                        auto_tools=auto_tools,
                        reasons=reasons,
                    )
                ),
                Emit.of(
                    PlaybookMatched(
                        playbook_id=str(playbook["id"]),
                        playbook_name=playbook["name"],
                        playbook_version=playbook["version"],
                        requires_approval=requires_approval,
                        recalculated=event.event_type == "PlaybookRecalculationRequested",
                    )
                ),
            ],
        )


AGENT = PolicyAgent()
