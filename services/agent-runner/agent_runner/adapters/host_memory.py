"""How much memory this process may still use: the kernel's MemAvailable, capped by the cgroup's
limit where one is set (a container sees the host's /proc/meminfo, not its own limit)."""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


def available_bytes(meminfo: Path = MEMINFO, cgroup: Path = CGROUP) -> int | None:
    """None where the host does not say (no /proc/meminfo)."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    available = next((int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:")), None)
    if available is None:
        return None
    limit = _cgroup_room(cgroup)
    return available if limit is None else min(available, limit)


def _cgroup_room(cgroup: Path) -> int | None:
    """cgroup v2: memory.max less memory.current; None without a limit ("max") or a cgroup."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        current = int((cgroup / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    if limit == "max":
        return None
    try:
        return max(0, int(limit) - current)
    except ValueError:
        return None
