"""The retry budget: retries in flight may not exceed a share of requests in flight.

As Envoy's RetryBudget: at most ``percent`` of active requests may be retries at once, but
always at least ``minimum``. An outage then cannot multiply the load on what is left.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RetryBudget:
    percent: float = 20.0
    minimum: int = 3
    active: int = 0
    retrying: int = 0
    denied: int = 0

    def allow(self) -> bool:
        if self.retrying < max(self.minimum, int(self.active * self.percent / 100)):
            return True
        self.denied += 1
        return False
