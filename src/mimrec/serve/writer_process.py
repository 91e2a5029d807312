"""Item adds in a child process that runs only on the CPU that scoring leaves.

An add is CPU work: the encoder's forward pass, then LanceDB's upsert (its own threads) and, every
few commits, the store's tidy-up. Run in the serving process, it shared the GIL and the cores
with the requests being scored (a writer thread at a higher nice value still made the event loop
wait for the GIL, and LanceDB's threads ran at full priority): on the 1M-item bundle with 5 adds/s
the score p99 went from 9.8 ms without adds to 21-36 ms. Here a child process of each serving
process does the adds under Linux's ``SCHED_IDLE`` policy (every thread it starts inherits it),
so a scoring process that wakes takes the core at once; the child shares no lock with the
scoring process (the store is followed through committed versions only). Under a full scoring
load adds wait for idle CPU.

The parent talks to the child over a socket pair, one add at a time (:meth:`WriterProcess.write`
has :meth:`mimrec.serve.item_writer.ItemWriter.write`'s contract). The child loads only the
store's encoder (:func:`mimrec.serve.bundle.load_writer`), ends with its parent (even on
``kill -9``), and is started again by the next add if it died.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mimrec.errors import MimrecError
from mimrec.serve.item_writer import WrittenItem
from mimrec.serve.request_error import RequestError

log = logging.getLogger("mimrec.serve")

START_TIMEOUT_S = 300.0  # loading the encoder (and torch) in the child


class WriterProcess:
    """Writes items through a child process (see the module docstring).

    Args:
        run: the run folder whose serving bundle names the store and its encoder.
        model_key: the served model (``<model>-seed<k>``).
    """

    def __init__(self, run: Path, model_key: str) -> None:
        self.run, self.model_key = Path(run), model_key
        self.text_fields: tuple[str, ...] = ()  # what the child's encoder reads (its answer)
        self.has_image_tower = False
        self._lock = threading.Lock()  # one add at a time through the pipe
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None once it has ended)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "mimrec.serve.writer_process", "--fd", str(theirs.fileno()),
               "--parent", str(os.getpid()), "--run", str(self.run), "--model", self.model_key]
        try:
            self._proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),),
                                          stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        if not self._conn.poll(START_TIMEOUT_S):
            self.close()
            raise MimrecError(f"the item writer process did not start within "
                              f"{START_TIMEOUT_S:.0f} s")
        try:
            kind, *rest = self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.wait()
            self.close()
            raise MimrecError(f"the item writer process ended while starting (exit code {code});"
                              " see the lines above") from None
        if kind != "ready":
            self.close()
            raise MimrecError(f"the item writer process could not start: {rest[0]}")
        self.text_fields, self.has_image_tower = tuple(rest[0]), bool(rest[1])

    def write(self, item_id: Any, fields: dict[str, Any], image: bytes | None,
              attributes: list[str] | None) -> WrittenItem:
        """Check, encode and persist one item in the child; its answer or its error here. A
        child that died (or dies during this add) is named in a 503; the next add starts a new
        one."""
        with self._lock:
            # never started, or died between adds (its end of the pipe closed: the child sends
            # nothing unasked, so a readable pipe is one at its end)
            if self._conn is None or self.pid is None or self._conn.poll(0):
                self.close()
                self._start()
            assert self._conn is not None
            try:
                self._conn.send(("write", item_id, fields, image, attributes))
                kind, *rest = self._conn.recv()
            except (EOFError, OSError):
                code = self._proc.wait() if self._proc is not None else None
                self.close()
                raise RequestError("server", f"the item writer process ended (exit code {code}) "
                                             "during this add; it may or may not be stored: "
                                             "post it again", status=503) from None
        if kind == "ok":
            return rest[0]
        if kind == "request":  # a client mistake: (field, problem, status)
            raise RequestError(*rest)
        if kind == "mimrec":
            raise MimrecError(rest[0])
        log.error("item writer process: %s", rest[1])
        raise RuntimeError(f"the item writer process failed: {rest[0]}")

    def close(self) -> None:
        """End the child (it also ends by itself when this process ends)."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def lowest_cpu_priority() -> str:
    """Put this process (its calling thread, and every thread started after) under
    ``SCHED_IDLE``; where that is not available, the highest nice value. Returns which."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19 - os.nice(0))
        return "nice 19"
    return "unchanged"


def _serve(conn: Connection, run: Path, model: str) -> None:
    """The child's loop: answer each ``("write", ...)`` until the parent closes the pipe."""
    try:
        from mimrec.serve.bundle import load_writer

        writer = load_writer(run, model)
        writer.warm_up(writer.text_fields)
    except Exception as exc:  # noqa: BLE001 - told to the parent, which names it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("ready", writer.text_fields, writer.has_image_tower))
    while True:
        try:
            _, item_id, item_fields, image, attributes = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple = ("ok", writer.write(item_id, item_fields, image, attributes))
        except RequestError as exc:
            answer = ("request", exc.field, exc.problem, exc.status)
        except MimrecError as exc:
            answer = ("mimrec", str(exc))
        except Exception as exc:  # noqa: BLE001 - the parent answers a 500 and logs this
            answer = ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        conn.send(answer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mimrec's item writer (started by the service)")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    lowest_cpu_priority()  # first: the threads torch and LanceDB start inherit it
    from mimrec.processes import die_with_parent

    die_with_parent(args.parent)
    import torch

    torch.set_num_threads(1)
    _serve(Connection(args.fd), args.run, args.model)


if __name__ == "__main__":
    main()
