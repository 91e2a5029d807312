"""Process hygiene: worker processes that die with their parent, and the temporary files and
folders that killed runs leave behind, removed by the next run.

Temporary names end in ``.tmp-<pid>`` (or ``.old-<pid>``), the id of the process that writes
them; one whose process is gone is stale.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_TEMP_PID = re.compile(r"\.(?:tmp|old)-(\d+)$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid`` ends, even by ``kill -9``.

    A process-pool initializer. On Linux the kernel sends SIGKILL when the parent dies
    (``PR_SET_PDEATHSIG``); everywhere a daemon thread also checks once a second that the parent
    is still there, and ends the process when it is not.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux: read from ``/proc``; empty elsewhere)."""
    kids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


_ENDS_WITH_LAUNCHER = False  # end_with_launcher ran in this process


def end_with_launcher() -> None:
    """Under ``torchrun`` (``TORCHELASTIC_RUN_ID`` in the environment): make this rank end when
    its launcher ends, even by ``kill -9`` (:func:`die_with_parent`; torchrun cannot pass a
    SIGKILL on, and its ranks are in their own process groups). Without it a rank of a killed
    ``torchrun ... mimrec index`` went on encoding, wrote the store and removed the shards that
    the rerun was reusing. A no-op outside torchrun and on a second call."""
    global _ENDS_WITH_LAUNCHER
    if _ENDS_WITH_LAUNCHER or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    _ENDS_WITH_LAUNCHER = True
    die_with_parent(os.getppid())


def remove_stale_temps(folder: Path, pattern: str) -> list[Path]:
    """Remove files and folders in ``folder`` matching ``pattern`` (a glob) whose name ends in
    ``.tmp-<pid>`` / ``.old-<pid>`` of a process that no longer runs; returns what went."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.glob(pattern):
        match = _TEMP_PID.search(path.name)
        if not match or int(match.group(1)) == os.getpid() or pid_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
