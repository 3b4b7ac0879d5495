"""Driving the webhook simulator's control API between measurements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SendWindow:
    """What the destination saw of one measurement: request arrival times, from its log."""

    arrivals: list[float]

    @property
    def requests(self) -> int:
        return len(self.arrivals)

    @property
    def seconds(self) -> float:
        return self.arrivals[-1] - self.arrivals[0] if self.arrivals else 0.0

    @property
    def requests_per_s(self) -> float:
        return _rate(self.arrivals)

    def utilisation(self, capacity: int, per_second: float) -> float:
        """Requests over what a token bucket (`capacity`, refilled at `per_second`, full at the
        first request) admits in this window: 1.0 means every allowed request was used.

        The burst a full bucket allows counts as allowance, so the figure cannot exceed 1 for
        a client the destination never had to refuse, however it spends its burst.
        """
        allowed = capacity + per_second * self.seconds
        return self.requests / allowed if allowed > 0 else 0.0

    def steady_requests_per_s(self, skip: float = 0.2) -> float:
        """The rate after the first `skip` share of requests.

        A token bucket starts full, so the first second brings a burst of up to a whole
        allowance on top of the rate; over a short window that burst alone would read as
        more than 100 % of the limit. Skipping it measures the pace the client keeps.
        """
        return _rate(self.arrivals[int(len(self.arrivals) * skip) :])


def _rate(arrivals: list[float]) -> float:
    # n arrivals span n - 1 intervals; counting n over that span would overstate the rate.
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return (len(arrivals) - 1) / span if span > 0 else 0.0


class SimulatorControl:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=60)

    def reset(self) -> None:
        """Forget every record, reply and counter, and go back to the start-up config."""
        self._http.post("/_sim/reset").raise_for_status()

    def configure(self, **patch: Any) -> None:
        self._http.put("/_sim/config", json=patch).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/_sim/stats")
        response.raise_for_status()
        return dict(response.json())

    def log(self, hook: str) -> list[dict[str, Any]]:
        """The hook's requests: batch, idempotency key, operations, status, wall-clock arrival."""
        response = self._http.get(f"/_sim/hooks/{hook}/log")
        response.raise_for_status()
        return list(response.json())

    def send_window(self, hook: str, status: int | None = 200) -> SendWindow | None:
        """Arrival times of the hook's requests (only those answered `status`, if given)."""
        arrivals = sorted(
            float(entry["received_at"])
            for entry in self.log(hook)
            if status is None or entry["status"] == status
        )
        return SendWindow(arrivals) if arrivals else None

    def close(self) -> None:
        self._http.close()
