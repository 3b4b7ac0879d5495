"""Where the worker's CPU goes while it delivers: py-spy attached to the worker process.

py-spy samples from outside (`--nonblocking`: the worker is never paused), so it adds
nothing to the worker's own CPU or memory. Raw output ("collapsed stacks": one line per
distinct stack, `frame;frame;... count`) is summarised two ways: by the leaf frame's
package (what kind of work) and by the leaf function (which code).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")
# The worker's own code is named by module; libraries by top-level package.
_OWN = ("switchyard/", "activities/", "workflows/", "starter/", "worker.py")
# Entry points sit on every stack; their inclusive share says nothing.
_ENTRY = {"<module>", "main", "run_worker", "serve"}


def py_spy() -> str | None:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out: Path, seconds: float, rate: int = 100) -> None:
        self.out = out
        self._argv = [
            py_spy() or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--nonblocking",
            "--rate",
            str(rate),
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.out.with_suffix(".log").open("wb")
        self._process = subprocess.Popen(
            self._argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def wait(self, timeout: float = 30) -> bool:
        """True if py-spy wrote its profile."""
        if self._process is None:
            return False
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            # SIGINT makes py-spy write what it has so far.
            self._process.send_signal(2)
            self._process.wait(10)
        return self.out.exists()


def _bucket(file: str) -> str:
    for own in _OWN:
        at = file.find(own)
        if at >= 0:
            return file[at:].removesuffix(".py")
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    # The standard library: by module (asyncio, logging, ssl, hmac, ...).
    name = file.rsplit("/", 1)[-1].removesuffix(".py")
    parent = file.rsplit("/", 2)[-2] if file.count("/") >= 1 else ""
    return parent if parent in {"asyncio", "logging", "concurrent", "json"} else name


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    """Shares of active samples: by leaf package/module and leaf function (self time), and
    by Switchyard function anywhere on the stack (inclusive time: what a step costs)."""
    by_bucket: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        leaf = stack.rsplit(";", 1)[-1]
        match = _FRAME.match(leaf)
        func, file = (match["func"], match["file"]) if match else (leaf, leaf)
        by_bucket[_bucket(file)] += n
        by_function[f"{func} ({_bucket(file)})"] += n
        own = set()
        for frame in stack.split(";"):
            found = _FRAME.match(frame)
            if (
                found
                and found["func"] not in _ENTRY
                and any(marker in found["file"] for marker in _OWN)
            ):
                own.add(f"{found['func']} ({_bucket(found['file'])})")
        inclusive.update(dict.fromkeys(own, n))
        total += n

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "share": round(n / total, 3)} for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "by_module": shares(by_bucket) if total else [],
        "by_function": shares(by_function) if total else [],
        "inclusive_own": shares(inclusive) if total else [],
    }
