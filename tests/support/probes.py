"""Probe agents for framework tests. Workers load them through SENTINAI_AGENT_IMPLEMENTATIONS, so the
real queues, tasks and consumer framework run them in real worker processes.

ProbeTriage consumes TriageRequested and records, on the exception row (normalized["applied"]), the
sequence of every event in the order it applied them. Its behaviour is steered by the event payload's
`exception_type`:
  "boom"  - raises while the file named by $PROBE_FAULT_FILE exists (a fault an operator can fix);
  "sleep" - sleeps $PROBE_SLEEP_SECONDS first (so a test can kill the worker holding the batch).
Otherwise it emits PolicyEvaluationRequested, which ProbePolicy consumes and answers with nothing.
"""

from __future__ import annotations

import os
import time

from sentinai.agent import Agent, Decision, Emit
from sentinai.events import PolicyEvaluationRequested


class ProbeTriage(Agent):
    name = "triage"
    exception_fields = ("normalized",)

    def decide(self, batch, state, event):
        kind = event.payload.get("exception_type")
        if kind == "boom" and os.path.exists(os.environ.get("PROBE_FAULT_FILE", "/nonexistent")):
            raise RuntimeError("probe fault")
        if kind == "sleep":
            time.sleep(float(os.environ.get("PROBE_SLEEP_SECONDS", "5")))
        applied = [*(state.get("normalized") or {}).get("applied", []), event.sequence]
        return Decision(
            exception={"normalized": {"applied": applied}},
            emit=[Emit.of(PolicyEvaluationRequested(exception_type="probe", severity="low"))],
        )


class ProbePolicy(Agent):
    name = "policy"

    def decide(self, batch, state, event):
        return Decision()


IMPLEMENTATIONS = {
    "triage": "tests.support.probes:ProbeTriage",
    "policy": "tests.support.probes:ProbePolicy",
}
