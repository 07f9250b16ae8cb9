"""Retry policy (exponential backoff with jitter, per agent) and the retry records it writes."""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float
    factor: float
    cap_seconds: float
    max_attempts: int

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retrying after failed attempt number `attempt` (1-based).

        "Equal jitter": half the exponential delay is fixed and half random, so delays still grow
        from one attempt to the next while concurrent retries spread out."""
        exp = min(self.cap_seconds, self.base_seconds * self.factor ** (attempt - 1))
        rng = rng or random
        return exp / 2 + rng.uniform(0, exp / 2)


def policy_for(agent: str) -> RetryPolicy:
    cfg = settings.SENTINAI
    override = cfg["RETRY_POLICIES"].get(agent, {})
    return RetryPolicy(
        base_seconds=float(override.get("base_seconds", cfg["RETRY_BASE_SECONDS"])),
        factor=float(override.get("factor", cfg["RETRY_FACTOR"])),
        cap_seconds=float(override.get("cap_seconds", cfg["RETRY_CAP_SECONDS"])),
        max_attempts=int(override.get("max_attempts", cfg["RETRY_MAX_ATTEMPTS"])),
    )
