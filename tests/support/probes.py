"""Probe agents for framework tests. Workers load them through SENTINAI_AGENT_IMPLEMENTATIONS, so the
real queues, tasks and consumer framework run them in real worker processes.

ProbeTriage consumes TriageRequested and records, on the exception row (normalized["applied"]), the
sequence of every event in the order it applied them. Its behaviour is steered by the event payload's
`exception_type`:
  "boom"  - raises while the file named by $PROBE_FAULT_FILE exists (a fault an operator can fix);
  "sleep" - while the file $PROBE_SLEEP_FILE exists: touches $PROBE_STARTED_FILE and sleeps
            $PROBE_SLEEP_SECONDS (so a test can kill the worker holding the batch);
  "unwritable" - while the file $PROBE_UNWRITABLE_FILE exists, decides a change the database refuses
            to store (a NUL character in the exception's jsonb), so the batch's bulk write fails.
Otherwise it emits PolicyEvaluationRequested, which ProbePolicy consumes and answers with nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sentinai.eventstore.events import PolicyEvaluationRequested
from sentinai.pipeline.agent import Agent, Decision, Emit


def _flag(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


class ProbeTriage(Agent):
    name = "triage"
    exception_fields = ("normalized",)

    def decide(self, batch, state, event):
        kind = event.payload.get("exception_type")
        fault = _flag("PROBE_FAULT_FILE")
        if kind == "boom" and fault and fault.exists():
            raise RuntimeError("probe fault")
        sleep_flag = _flag("PROBE_SLEEP_FILE")
        if kind == "sleep" and sleep_flag and sleep_flag.exists():
            started = _flag("PROBE_STARTED_FILE")
            if started:
                started.touch()
            time.sleep(float(os.environ.get("PROBE_SLEEP_SECONDS", "0.05")))
        applied = [*(state.get("normalized") or {}).get("applied", []), event.sequence]
        normalized: dict = {"applied": applied}
        unwritable = _flag("PROBE_UNWRITABLE_FILE")
        if kind == "unwritable" and unwritable and unwritable.exists():
            normalized["note"] = "\u0000"
        return Decision(
            exception={"normalized": normalized},
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
