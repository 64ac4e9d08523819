"""The memory a runner may still use, read from files shaped like /proc/meminfo and cgroup v2's."""

from __future__ import annotations

from pathlib import Path

from agent_runner.adapters.host_memory import available_bytes

MEMINFO = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n"


def write(root: Path, meminfo: str | None, limit: str | None = None, current: str = "0") -> tuple[Path, Path]:
    """(meminfo, cgroup dir) under `root`, a directory of their own."""
    info, cgroup = root / "meminfo", root / "cgroup"
    cgroup.mkdir(parents=True)
    if meminfo is not None:
        info.write_text(meminfo)
    if limit is not None:
        (cgroup / "memory.max").write_text(limit + "\n")
        (cgroup / "memory.current").write_text(current + "\n")
    return info, cgroup


def test_without_a_cgroup_limit_it_is_the_kernels_estimate(tmp_path):
    assert available_bytes(*write(tmp_path / "none", MEMINFO)) == 20_000_000 * 1024
    assert available_bytes(*write(tmp_path / "max", MEMINFO, "max")) == 20_000_000 * 1024


def test_a_container_limit_caps_it_at_the_room_left(tmp_path):
    limit, current = 4 * 1024**3, 3 * 1024**3
    assert available_bytes(*write(tmp_path, MEMINFO, str(limit), str(current))) == 1024**3


def test_a_container_over_its_limit_has_no_room(tmp_path):
    assert available_bytes(*write(tmp_path, MEMINFO, "100", "200")) == 0


def test_a_host_that_does_not_say_gives_none(tmp_path):
    assert available_bytes(*write(tmp_path / "absent", None)) is None
    assert available_bytes(*write(tmp_path / "old-kernel", "MemTotal: 1 kB\n")) is None
