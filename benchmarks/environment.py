"""The machine and library versions a benchmark run is quoted with (CPU, cores, both
environments). A leaf of benchmarks/: ``run_all.py`` and ``write_results.py`` both import it, and
neither imports the other back."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PY = sys.executable
FUXICTR_PYTHON = ".venv-fuxictr/bin/python"


def versions(python: str, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``packages`` in the environment of ``python``."""
    if python == PY:
        out = {}
        for p in packages:
            try:
                out[p] = metadata.version(p)
            except metadata.PackageNotFoundError:
                out[p] = "-"
        return out
    code = ("import json, importlib.metadata as m\nout = {}\n"
            f"for p in {packages!r}:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = '-'\n"
            "print(json.dumps(out))")
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def environment() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text()
                .splitlines() if line.startswith("MemTotal")), 0.0)
    lines = [f"- CPU: {cpu}, {os.cpu_count()} cores visible, {mem:.0f} GiB RAM; "
             f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
             "- mimrec environment (`.venv`): " + ", ".join(
                 f"{k} {v}" for k, v in versions(PY, (
                     "mimrec", "torch", "numpy", "pandas", "pyarrow", "scikit-learn",
                     "transformers", "sentence-transformers")).items())]
    if Path(FUXICTR_PYTHON).exists():
        lines.append("- FuxiCTR environment (`.venv-fuxictr`): " + ", ".join(
            f"{k} {v}" for k, v in versions(FUXICTR_PYTHON, (
                "fuxictr", "torch", "polars", "ray", "numpy", "pandas")).items()))
    return lines
