"""Processes seen from /proc, for the tests that kill runs and check nothing is left behind."""

from __future__ import annotations

from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids
