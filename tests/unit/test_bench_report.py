"""The benchmark's arithmetic: ratios, the RSS check, rate-limit utilisation, the results
schema and the profile summary. No dlt, no stack: pure functions over small inputs."""

from __future__ import annotations

import json

import pytest

from bench import report, revocation
from bench.profiler import summarise
from bench.simulator import SendWindow


def test_ratios_compare_switchyard_with_each_peer_and_durations_with_the_full_sync() -> None:
    throughput = report.Throughput(switchyard=50_000, floor=200_000, dlt=80_000)

    ratios = report.compute_ratios(throughput, full_s=40.0, incremental_s=8.0, no_change_s=6.0)

    assert ratios == report.Ratios(
        vs_floor=0.25, vs_dlt=0.625, incremental_1pct_of_full=0.2, no_change_of_full=0.15
    )


def test_a_missing_measurement_leaves_its_ratios_empty_instead_of_failing() -> None:
    throughput = report.Throughput(switchyard=50_000, floor=None, dlt=0.0)

    ratios = report.compute_ratios(throughput, full_s=None, incremental_s=8.0, no_change_s=None)

    assert ratios == report.Ratios()


@pytest.mark.parametrize(
    ("p1m", "p10m", "within"), [(400.0, 480.0, True), (400.0, 500.0, True), (400.0, 520.0, False)]
)
def test_peak_rss_is_checked_against_the_growth_limit(
    p1m: float, p10m: float, within: bool
) -> None:
    rss = report.peak_rss(p1m, p10m)

    assert rss.within_limit is within
    assert rss.ratio == pytest.approx(p10m / p1m)


def test_peak_rss_without_the_large_run_is_reported_not_judged() -> None:
    assert report.peak_rss(400.0, None).within_limit is None


def test_results_json_keeps_every_headline_key_even_when_unmeasured() -> None:
    data = json.loads(report.Results().model_dump_json())

    assert set(data["full_sync_records_per_s"]) == {"switchyard", "floor", "dlt"}
    assert set(data["ratios"]) == {
        "vs_floor",
        "vs_dlt",
        "incremental_1pct_of_full",
        "no_change_of_full",
    }
    assert {"p1m", "p10m"} <= set(data["peak_rss_mb"])
    assert data["revocation_latency_s"] == {"p50": None, "p99": None}
    assert "rate_limit_utilisation" in data
    assert "machine" in data


def test_markdown_shows_missing_figures_as_dashes() -> None:
    results = report.Results(full_sync_records_per_s=report.Throughput(switchyard=12_345.6))

    text = report.markdown(results)

    assert "| full sync 1M, Switchyard (run) | 12,346 rec/s |" in text
    assert "| full sync 1M, dlt (Arrow, parallel load) | — |" in text


def test_a_client_pacing_exactly_at_the_limit_uses_the_whole_allowance() -> None:
    # A full bucket of 10 spent at once, then one request every 0.1 s at 10/s for 5 s.
    burst = [0.0] * 10
    paced = [0.1 * i for i in range(1, 51)]
    window = SendWindow(burst + paced)

    assert window.utilisation(capacity=10, per_second=10) == pytest.approx(1.0)
    # The burst is why the plain rate overstates it, and why the steady rate skips it.
    assert window.requests_per_s > 10
    assert window.steady_requests_per_s() == pytest.approx(10)


def test_a_client_pacing_at_half_the_limit_uses_half_of_it() -> None:
    window = SendWindow([0.2 * i for i in range(101)])

    assert window.utilisation(capacity=1, per_second=10) == pytest.approx(101 / 201)


def test_profile_summary_groups_leaf_frames_and_counts_own_code_inclusively() -> None:
    raw = "\n".join(
        [
            "main (worker.py:60);deliver (switchyard/delivery/engine.py:50);"
            "post (httpx/_client.py:10) 3",
            "main (worker.py:60);deliver (switchyard/delivery/engine.py:50);"
            "render_body (switchyard/destinations/webhook/client.py:70) 1",
        ]
    )
    raw = raw.replace("httpx/", "/venv/lib/site-packages/httpx/")

    summary = summarise(raw)

    assert summary["samples"] == 4
    assert summary["by_module"][0] == {"name": "httpx", "share": 0.75}
    inclusive = {row["name"]: row["share"] for row in summary["inclusive_own"]}
    assert inclusive["deliver (switchyard/delivery/engine)"] == 1.0
    assert "main (worker)" not in inclusive


def test_each_revoked_profile_takes_its_batchs_arrival_and_replays_count_once() -> None:
    log = [
        {"idempotency_key": "old", "operations": 1000, "status": 200, "received_at": 99.0},
        {"idempotency_key": "a", "operations": 1000, "status": 429, "received_at": 100.5},
        {"idempotency_key": "a", "operations": 600, "status": 200, "received_at": 101.0},
        {"idempotency_key": "b", "operations": 400, "status": 200, "received_at": 102.0},
        {"idempotency_key": "b", "operations": 400, "status": 200, "received_at": 102.5},
    ]
    seconds = revocation.latencies(log, revoked_at=100.0)
    # Before the revocation, refused, or a replay: none of those removed a revoked profile.
    assert len(seconds) == 1000
    assert revocation.summary(seconds) == {"p50": 1.0, "p99": 2.0, "max": 2.0, "mean": 1.4}
