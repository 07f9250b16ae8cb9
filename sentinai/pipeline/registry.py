"""Which implementation runs each agent.

By default agent `x` runs `agents.x.logic.AGENT`. SENTINAI_AGENT_IMPLEMENTATIONS (JSON
{"agent": "module:attribute"}) swaps implementations without touching the queues or the framework:
the throughput benchmark runs pass-through agents this way, and framework tests run probe agents.
"""

from __future__ import annotations

import importlib
from functools import cache

from django.conf import settings

from sentinai.pipeline.agent import Agent


@cache
def get_agent(name: str) -> Agent:
    path = settings.SENTINAI["AGENT_IMPLEMENTATIONS"].get(name, f"agents.{name}.logic:AGENT")
    module_name, _, attribute = path.partition(":")
    agent = getattr(importlib.import_module(module_name), attribute or "AGENT")
    if isinstance(agent, type):
        agent = agent()
    if agent.name != name:
        raise ValueError(f"{path} implements agent {agent.name!r}, not {name!r}")
    return agent
