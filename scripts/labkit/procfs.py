"""/proc readers: process trees (for stopping every descendant), CPU time and memory."""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rparen = raw.rfind(")")
    # fields[0] is field 3 (state) of proc(5)
    return raw[rparen + 2:].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime (proc(5) fields 14 and 15) of the whole thread group, in seconds."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    return (int(f[14 - 3]) + int(f[15 - 3])) / CLK_TCK


def start_time(pid: int) -> int | None:
    """Field 22 (starttime); with the PID it names a process even after the PID is recycled."""
    f = _stat_fields(pid)
    return None if f is None else int(f[22 - 3])


def parent_pid(pid: int) -> int | None:
    """Field 4 (ppid), None once the process is gone."""
    f = _stat_fields(pid)
    return None if f is None else int(f[4 - 3])


def children_of(pid: int) -> list[int]:
    """Direct children: /proc/PID/task/*/children when the kernel has it, else scan /proc."""
    kids: set[int] = set()
    task_dir = Path(f"/proc/{pid}/task")
    have_children_file = False
    try:
        for t in task_dir.iterdir():
            cf = t / "children"
            if cf.exists():
                have_children_file = True
                kids.update(int(x) for x in cf.read_text().split())
    except FileNotFoundError:
        return []
    if not have_children_file:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and parent_pid(int(entry)) == pid:
                kids.add(int(entry))
    return sorted(kids)


def process_tree(pid: int) -> list[int]:
    """pid plus all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children_of(p))
    return out


def proc_status_kib(pid: int, key: str) -> int | None:
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def rss_kib(pids) -> int:
    """Summed VmRSS of `pids`, in KiB (gone processes count 0)."""
    return sum(proc_status_kib(p, "VmRSS") or 0 for p in pids)


def hwm_kib(pids) -> int:
    """Summed VmHWM (peak RSS) of `pids`, in KiB."""
    return sum(proc_status_kib(p, "VmHWM") or 0 for p in pids)


def tree_cpu_seconds(pids) -> float:
    """Summed CPU seconds of `pids`."""
    return sum(cpu_seconds(p) for p in pids)
