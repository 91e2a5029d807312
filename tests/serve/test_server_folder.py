"""The private folder of a multi-worker service (writer socket, metrics): a service killed with
``kill -9`` cannot remove its own, so the next service start removes it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile

from mimrec.serve.server import service_folder


def test_a_killed_services_folder_goes_at_the_next_start_and_a_running_ones_stays(
        tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f"mimrec-serve-abc.tmp-{dead}"
    (stale / "metrics").mkdir(parents=True)
    (stale / "writer.sock").write_text("")
    running = tmp_path / f"mimrec-serve-def.tmp-{os.getppid()}"  # its process runs: kept
    running.mkdir()
    other = tmp_path / f"someone-else.tmp-{dead}"  # not a service's: kept
    other.mkdir()
    folder = service_folder()
    assert folder.parent == tmp_path and folder.name.startswith("mimrec-serve-")
    assert folder.name.endswith(f".tmp-{os.getpid()}")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # only this user opens its socket
    assert not stale.exists() and running.is_dir() and other.is_dir()
