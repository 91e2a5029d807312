"""The run's log file: every line a stage prints on the terminal, also written as plain text with
a time stamp to ``RUN/logs/run.log`` (appended by each command; progress bars stay on the
terminal only)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from rich.console import Console

LOG_NAME = Path("logs") / "run.log"


def log_path(run: Path) -> Path:
    """Where the log file of run folder ``run`` lives."""
    return run / LOG_NAME


class LoggedConsole(Console):
    """A rich console whose printed lines also go, time-stamped and without colour, to a file.

    Args:
        log: the log file (its folder is made on the first line; lines are appended).
        **kwargs: the terminal console's settings (width, ...).
    """

    def __init__(self, log: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_file = log
        self._width = kwargs.get("width") or 100

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*objects, **kwargs)
        self.write_log(*objects, **kwargs)

    def write_log(self, *objects: Any, **kwargs: Any) -> None:
        """Write ``objects`` as :meth:`print` renders them, one time-stamped line per line."""
        buffer = io.StringIO()
        plain = Console(file=buffer, width=self._width, color_system=None, force_terminal=False,
                        force_jupyter=False, force_interactive=False, soft_wrap=False)
        plain.print(*objects, **{k: v for k, v in kwargs.items()
                                 if k in ("sep", "end", "justify", "overflow", "no_wrap",
                                          "markup", "highlight")})
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = "".join(f"{stamp}  {line.rstrip()}\n"
                       for line in buffer.getvalue().rstrip("\n").split("\n"))
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a", encoding="utf-8") as f:
            f.write(text)
