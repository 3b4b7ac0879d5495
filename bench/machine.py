"""What the numbers were measured on, and what else was using it at the time.

The dev machines are shared: another engineer's test run on the same two cores halves a
throughput figure. So every measurement also records how much CPU went to processes that
are not the benchmark's (`background_cpu_s`), which says how far to trust the number.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def describe() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_meminfo_kib("MemTotal") / 1024**2, 1),
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def code_version(repo: Path) -> dict[str, Any]:
    """The commit measured, and the files that differed from it (read-only git commands)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        # Only trailing whitespace: porcelain lines start with a meaningful space.
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line]
    return {"commit": git("rev-parse", "HEAD") or None, "uncommitted_files": changed}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mb(pid: int) -> float | None:
    """The process's high-water mark of resident memory (VmHWM), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / _TICK


def _machine_busy_s() -> float:
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    return (sum(values[:8]) - values[3] - values[4]) / _TICK


def _own_cpu_s(live: list[int]) -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    # Children already reaped (the peers) are here; live ones (stack, worker) are read below.
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = me.ru_utime + me.ru_stime + reaped.ru_utime + reaped.ru_stime
    return own + sum(process_cpu_s(pid) for pid in live)


@dataclass
class CpuAccount:
    """CPU seconds spent during one measurement: by the benchmark's processes, by others."""

    live: list[int] = field(default_factory=list)
    _busy0: float = 0.0
    _own0: float = 0.0

    def start(self, live: list[int]) -> CpuAccount:
        self.live = list(live)
        self._busy0, self._own0 = _machine_busy_s(), _own_cpu_s(self.live)
        return self

    def stop(self) -> dict[str, float]:
        busy = _machine_busy_s() - self._busy0
        own = _own_cpu_s(self.live) - self._own0
        return {"bench_cpu_s": round(own, 2), "background_cpu_s": round(max(0.0, busy - own), 2)}
