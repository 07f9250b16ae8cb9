"""Policy: apply the tenant's guardrails and match a playbook (or ask for escalation)."""

from __future__ import annotations

from playbooks_app import selectors as playbook_selectors
from sentinai.eventstore.events import EscalationRequested, PlaybookMatched, PolicyEvaluationCompleted
from sentinai.packs import domain
from sentinai.packs.conditions import exception_view, holds
from sentinai.pipeline.agent import Agent, Decision, Emit
from tools_app import selectors as tool_selectors


class PolicyAgent(Agent):
    name = "policy"
    exception_fields = ("status", "exception_type", "severity", "normalized", "payload", "closed_at")

    def load(self, batch, states):
        batch.data.update(
            pack=domain.tenant_pack(batch.tenant),
            playbooks=playbook_selectors.active_playbooks(tenant=batch.tenant),
            auto_tools=tool_selectors.auto_approved_tool_names(tenant=batch.tenant),
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
        unattended = playbook["tools"] - batch.data["auto_tools"]
        if unattended:
            requires_approval = True
            reasons.append(f"tools {sorted(unattended)} may not run without a human")
        return Decision(
            exception={"status": "in_progress"},
            emit=[
                Emit.of(
                    PolicyEvaluationCompleted(
                        playbook_id=playbook["id"],
                        playbook_name=playbook["name"],
                        requires_approval=requires_approval,
                        auto_tools=auto_tools,
                        reasons=reasons,
                    )
                ),
                Emit.of(
                    PlaybookMatched(
                        playbook_id=playbook["id"],
                        playbook_name=playbook["name"],
                        playbook_version=playbook["version"],
                        requires_approval=requires_approval,
                        recalculated=event.event_type == "PlaybookRecalculationRequested",
                    )
                ),
            ],
        )


AGENT = PolicyAgent()
