"""CPU time and memory of server processes, read from ``/proc`` (Linux only).

The load generator runs on the same machine, so throughput alone says little; what the server
itself spends is read from its processes' own counters: ``utime + stime`` in
``/proc/<pid>/stat`` (clock ticks) and ``VmRSS``/``VmHWM`` in ``/proc/<pid>/status``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ProcessSample",
    "children_of",
    "cpu_seconds",
    "memory_kib",
    "pids_named",
    "sample",
]

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (all its threads, dead ones included)."""
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    # the command name may hold spaces and parentheses: split after the last ")"
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / TICKS_PER_SECOND


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (peak RSS) and ``Threads`` of ``pid``."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in wanted:
                found[name] = int(value.split()[0])
    return found


def _parent_and_name(pid: int) -> tuple[int, str]:
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    name = text[text.index("(") + 1 : text.rindex(")")]
    ppid = int(text[text.rindex(")") + 2 :].split()[1])
    return ppid, name


def _all_pids() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers, for its master)."""
    found = []
    for candidate in _all_pids():
        try:
            if _parent_and_name(candidate)[0] == pid:
                found.append(candidate)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return sorted(found)


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (e.g. ``postgres``, ``redis-server``)."""
    found = []
    for candidate in _all_pids():
        try:
            if _parent_and_name(candidate)[1] == name:
                found.append(candidate)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return sorted(found)


@dataclass(frozen=True)
class ProcessSample:
    cpu: dict[int, float]
    memory: dict[int, dict[str, int]]

    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    def total_rss_kib(self) -> int:
        return sum(m.get("VmRSS", 0) for m in self.memory.values())

    def cpu_since(self, earlier: ProcessSample) -> float:
        """CPU seconds spent between ``earlier`` and this sample, by processes alive in both."""
        return sum(self.cpu[p] - earlier.cpu[p] for p in self.cpu if p in earlier.cpu)


def sample(pids: Iterable[int]) -> ProcessSample:
    cpu: dict[int, float] = {}
    memory: dict[int, dict[str, int]] = {}
    for pid in pids:
        try:
            cpu[pid] = cpu_seconds(pid)
            memory[pid] = memory_kib(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return ProcessSample(cpu, memory)
