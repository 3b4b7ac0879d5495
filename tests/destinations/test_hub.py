"""The simulator hub: every registered destination's simulator on one port, or one alone."""

from __future__ import annotations

import httpx

from switchyard.destinations import registry
from switchyard.simulators.hub import create_app
from switchyard.simulators.server import run_in_thread


def test_every_simulator_answers_under_its_kind_and_the_webhook_at_the_root() -> None:
    with run_in_thread(create_app()) as url:
        for kind in registry.SPECS:
            response = httpx.get(f"{url}/{kind}/_sim/stats", timeout=10)
            assert response.status_code == 200, kind
            assert response.json()["requests"] == 0, kind
        # The webhook's historical URLs keep working at the root.
        assert "per_hook" in httpx.get(f"{url}/_sim/stats", timeout=10).json()


def test_only_serves_one_simulator_at_the_root() -> None:
    with run_in_thread(create_app(only="hubspot")) as url:
        stats = httpx.get(f"{url}/_sim/stats", timeout=10).json()
        assert "per_hook" not in stats and stats["requests"] == 0
        assert httpx.get(f"{url}/hubspot/_sim/stats", timeout=10).status_code == 404
        answer = httpx.post(f"{url}/crm/v3/objects/contacts/batch/upsert", json={}, timeout=10)
        assert answer.status_code == 401  # HubSpot's own path, refusing a missing token
