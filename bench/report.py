"""The results: one model, the ratios derived from it, and its three renderings.

`bench/results.json` is the model as JSON; `results.md` a short table; `results.png` a chart.
Every figure is optional (None) so a benchmark that could not take one measurement still
writes the others and says why in `notes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

# Worker memory must stay bounded by chunk size, not audience size.
RSS_GROWTH_LIMIT = 1.25
# A rate-limited destination should be kept this busy, with no 429s.
UTILISATION_TARGET = 0.95


class Throughput(BaseModel):
    switchyard: float | None = None
    floor: float | None = None
    dlt: float | None = None


class Ratios(BaseModel):
    vs_floor: float | None = None
    vs_dlt: float | None = None
    incremental_1pct_of_full: float | None = None
    no_change_of_full: float | None = None


class PeakRss(BaseModel):
    p1m: float | None = None
    p10m: float | None = None
    ratio: float | None = None
    within_limit: bool | None = None
    limit: float = RSS_GROWTH_LIMIT


class Latency(BaseModel):
    p50: float | None = None
    p99: float | None = None


class Results(BaseModel):
    full_sync_records_per_s: Throughput = Throughput()
    ratios: Ratios = Ratios()
    peak_rss_mb: PeakRss = PeakRss()
    rate_limit_utilisation: float | None = None
    # Consent revoked in the warehouse → profile removed at the destination, a run started
    # at once (a schedule adds up to its interval).
    revocation_latency_s: Latency = Latency()
    machine: dict[str, Any] = Field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    total_s: float | None = None
    # Everything behind the headline numbers: per-measurement records, durations, step
    # timings, CPU accounting, 429 counts, the worker profile.
    details: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def compute_ratios(
    throughput: Throughput,
    full_s: float | None,
    incremental_s: float | None,
    no_change_s: float | None,
) -> Ratios:
    return Ratios(
        vs_floor=ratio(throughput.switchyard, throughput.floor),
        vs_dlt=ratio(throughput.switchyard, throughput.dlt),
        incremental_1pct_of_full=ratio(incremental_s, full_s),
        no_change_of_full=ratio(no_change_s, full_s),
    )


def peak_rss(p1m: float | None, p10m: float | None) -> PeakRss:
    growth = ratio(p10m, p1m)
    return PeakRss(
        p1m=round(p1m, 1) if p1m is not None else None,
        p10m=round(p10m, 1) if p10m is not None else None,
        ratio=growth,
        within_limit=None if growth is None else growth <= RSS_GROWTH_LIMIT,
    )


def _num(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def markdown(results: Results) -> str:
    tp, ratios, rss = results.full_sync_records_per_s, results.ratios, results.peak_rss_mb
    rate = results.details.get("rate_limited", {})
    machine = results.machine
    rows = [
        ("full sync 1M, Switchyard (run)", _num(tp.switchyard, " rec/s")),
        ("full sync 1M, floor (plain loop)", _num(tp.floor, " rec/s")),
        ("full sync 1M, dlt (Arrow, parallel load)", _num(tp.dlt, " rec/s")),
        ("Switchyard / floor", _num(ratios.vs_floor, "", 2)),
        ("Switchyard / dlt", _num(ratios.vs_dlt, "", 2)),
        ("incremental 1 % / full (duration)", _pct(ratios.incremental_1pct_of_full)),
        ("no change / full (duration)", _pct(ratios.no_change_of_full)),
        ("worker peak RSS 1M / 10M", f"{_num(rss.p1m, ' MiB')} / {_num(rss.p10m, ' MiB')}"),
        (
            f"RSS 10M / 1M (limit {rss.limit})",
            _num(rss.ratio, "", 2)
            + ("" if rss.within_limit is None else (" ok" if rss.within_limit else " OVER")),
        ),
        (
            "rate-limit utilisation (429s)",
            f"{_pct(results.rate_limit_utilisation)} ({rate.get('status_429', '—')})",
        ),
        (
            "revocation latency p50 / p99",
            f"{_num(results.revocation_latency_s.p50, ' s', 2)} / "
            f"{_num(results.revocation_latency_s.p99, ' s', 2)}",
        ),
    ]
    large = results.details.get("switchyard_full_large", {})
    if large.get("run_s") is not None:
        outcome = large.get("status", "?")
        failed = ", ".join(large.get("failures", {})) if outcome != "succeeded" else ""
        rows.insert(
            9,
            (
                f"large run ({large.get('profiles', 0):,} profiles)",
                f"{outcome} after {large['run_s']:,.0f} s" + (f" ({failed})" if failed else ""),
            ),
        )
    full = results.details.get("switchyard_full_1m", {})
    if full.get("deliver_records_per_s"):
        rows.insert(
            3, ("  Switchyard delivery step only", _num(full["deliver_records_per_s"], " rec/s"))
        )
    lines = [
        "# Switchyard benchmark",
        "",
        f"{results.started_at} · {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} "
        f"cores, {machine.get('memory_gib', '?')} GiB, Python {machine.get('python', '?')} · "
        f"total {_num(results.total_s, ' s')}",
        "",
        "| measurement | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    if results.notes:
        lines += ["", *(f"- {note}" for note in results.notes)]
    return "\n".join(lines) + "\n"


def chart(results: Results, path: Path) -> None:
    """Throughput by path, and where a Switchyard full sync spends its time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp = results.full_sync_records_per_s
    full = results.details.get("switchyard_full_1m", {})
    bars = [
        ("floor", tp.floor),
        ("dlt", tp.dlt),
        ("Switchyard\nrun", tp.switchyard),
        ("Switchyard\ndelivery only", full.get("deliver_records_per_s")),
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[3, 2])
    names = [name for name, _ in bars]
    values = [value or 0 for _, value in bars]
    drawn = left.bar(names, values, color=["#999999", "#6f8fbf", "#d9822b", "#f2b880"])
    left.bar_label(drawn, labels=[f"{v / 1000:,.0f}k" if v else "n/a" for v in values])
    left.set_ylabel("records / s")
    left.yaxis.set_major_formatter(lambda value, _: f"{value / 1000:,.0f}k")
    left.set_title("Full sync, 1M profiles → webhook simulator")
    steps: dict[str, float] = full.get("steps_s", {})
    if steps:
        labels = [name.replace("_", " ") for name in steps]
        right.barh(labels, list(steps.values()), color="#d9822b")
        right.invert_yaxis()
        right.set_xlabel("seconds (first scheduled → last closed)")
        right.set_title("Switchyard 1M full sync: time by step")
    else:
        right.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: Results, folder: Path) -> list[Path]:
    paths = [folder / "results.json", folder / "results.md", folder / "results.png"]
    paths[0].write_text(results.model_dump_json(indent=2) + "\n")
    paths[1].write_text(markdown(results))
    chart(results, paths[2])
    return paths
