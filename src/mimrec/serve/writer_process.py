"""Item adds in a child process that runs only on the CPU that scoring leaves.

An add is CPU work: the encoder's forward pass, then LanceDB's upsert (its own threads) and, every
few commits, the store's tidy-up. Run in the serving process, it shared the GIL and the cores
with the requests being scored (a writer thread at a higher nice value still made the event loop
wait for the GIL, and LanceDB's threads ran at full priority): on the 1M-item bundle with 5 adds/s
the score p99 went from 9.8 ms without adds to 21-36 ms. Here a child process does the adds
under Linux's ``SCHED_IDLE`` policy (every thread it starts inherits it), so a scoring process
that wakes takes the core at once; the child shares no lock with the scoring processes (the
store is followed through committed versions only). Under a full scoring load adds wait for idle
CPU.

One writer per service. With one serving process, that process starts the child
(:class:`WriterProcess`) and talks to it over a socket pair. With ``--workers N``, the
supervisor starts one child that listens on a Unix socket (``listen``, in a folder only this user
can open, with an authentication key) and keeps it running (:meth:`WriterProcess.keep_running`);
each worker connects to it (:class:`WriterClient`). The child holds torch, the encoder and the
LanceDB writer (650-800 MiB): one per service instead of one per worker, and the one place that
commits to the store. Adds from several workers are written one at a time, in arrival order.

Every connection carries one add at a time (``write`` has
:meth:`mimrec.serve.item_writer.ItemWriter.write`'s contract). The child loads only the store's
encoder (:func:`mimrec.serve.bundle.load_writer`) and ends with the process that started it
(even on ``kill -9``); a child that died is started again (by the next add, or by the
supervisor's watcher).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from mimrec.errors import MimrecError
from mimrec.serve.item_writer import WrittenItem
from mimrec.serve.request_error import RequestError

log = logging.getLogger("mimrec.serve")

START_TIMEOUT_S = 300.0  # loading the encoder (and torch) in the child
CONNECT_TIMEOUT_S = 60.0  # a worker's wait for the shared writer to accept (it may be restarting)
RESTART_PAUSE_S = 5.0  # the supervisor's pause before starting again a writer that failed to start
SOCKET_ENV = "MIMREC_WRITER_SOCKET"  # set by ``mimrec serve --workers N`` for its workers
KEY_ENV = "MIMREC_WRITER_KEY"  # the shared writer's authentication key (hex)


@dataclasses.dataclass(frozen=True)
class SharedWriter:
    """Where a service's shared writer child listens (``mimrec serve --workers N``)."""

    path: Path  # its Unix socket
    key: bytes  # the authentication key a connection must give

    @classmethod
    def new(cls, folder: Path) -> SharedWriter:
        """A socket in ``folder`` (one only this user can open) and a fresh random key."""
        return cls(Path(folder) / "writer.sock", secrets.token_bytes(32))

    def env(self) -> dict[str, str]:
        """The environment variables that tell worker processes about it."""
        return {SOCKET_ENV: str(self.path), KEY_ENV: self.key.hex()}

    @classmethod
    def from_env(cls) -> SharedWriter | None:
        """The shared writer named by the environment (None: this process has none)."""
        path = os.environ.get(SOCKET_ENV)
        return cls(Path(path), bytes.fromhex(os.environ.get(KEY_ENV, ""))) if path else None


def _ready(conn: Connection) -> tuple[tuple[str, ...], bool]:
    """Wait for the child's first message on ``conn``: its text fields and image tower."""
    if not conn.poll(START_TIMEOUT_S):
        raise MimrecError(f"the item writer process did not start within {START_TIMEOUT_S:.0f} s")
    kind, *rest = conn.recv()  # EOFError / OSError: the caller names the child's end
    if kind != "ready":
        raise MimrecError(f"the item writer process could not start: {rest[0]}")
    return tuple(rest[0]), bool(rest[1])


def _exchange(conn: Connection, item_id: Any, fields: dict[str, Any], image: bytes | None,
              attributes: list[str] | None) -> tuple:
    """Send one add and return the child's answer (raises EOFError / OSError if it ended)."""
    conn.send(("write", item_id, fields, image, attributes))
    return conn.recv()


def _answer(answer: tuple) -> WrittenItem:
    """The child's answer to one add, as :meth:`~mimrec.serve.item_writer.ItemWriter.write`
    would have returned or raised it."""
    kind, *rest = answer
    if kind == "ok":
        return rest[0]
    if kind == "request":  # a client mistake: (field, problem, status)
        raise RequestError(*rest)
    if kind == "mimrec":
        raise MimrecError(rest[0])
    log.error("item writer process: %s", rest[1])
    raise RuntimeError(f"the item writer process failed: {rest[0]}")


def _close(conn: Connection | None) -> None:
    """Close a connection to the child, if any (one the other end closed first included)."""
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


def _ended_during_add(code: int | None) -> RequestError:
    return RequestError("server", f"the item writer process ended (exit code {code}) during "
                                  "this add; it may or may not be stored: post it again",
                        status=503)


class WriterProcess:
    """Starts the writer child and, without ``listen``, writes items through it (see the module
    docstring).

    Args:
        run: the run folder whose serving bundle names the store and its encoder.
        model_key: the served model (``<model>-seed<k>``).
        shared: where the child also accepts workers (:class:`WriterClient`).
    """

    def __init__(self, run: Path, model_key: str, shared: SharedWriter | None = None) -> None:
        self.run, self.model_key, self.shared = Path(run), model_key, shared
        self.text_fields: tuple[str, ...] = ()  # what the child's encoder reads (its answer)
        self.has_image_tower = False
        self._lock = threading.Lock()  # one add at a time through the pipe
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._closed = False
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None once it has ended)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "mimrec.serve.writer_process", "--fd", str(theirs.fileno()),
               "--parent", str(os.getpid()), "--run", str(self.run), "--model", self.model_key]
        env = None
        if self.shared is not None:  # (the key goes by the environment, not the command line)
            cmd += ["--listen", str(self.shared.path)]
            env = {**os.environ, **self.shared.env()}
        try:
            self._proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),),
                                          stdin=subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        try:
            self.text_fields, self.has_image_tower = _ready(self._conn)
        except (EOFError, OSError):
            code = self._proc.wait()
            self._end_child()
            raise MimrecError(f"the item writer process ended while starting (exit code {code});"
                              " see the lines above") from None
        except MimrecError:
            self._end_child()
            raise

    def write(self, item_id: Any, fields: dict[str, Any], image: bytes | None,
              attributes: list[str] | None) -> WrittenItem:
        """Check, encode and persist one item in the child; its answer or its error here. A
        child that died (or dies during this add) is named in a 503; the next add starts a new
        one."""
        with self._lock:
            # never started, or died between adds (its end of the pipe closed: the child sends
            # nothing unasked, so a readable pipe is one at its end)
            if self._conn is None or self.pid is None or self._conn.poll(0):
                self._end_child()
                self._start()
            assert self._conn is not None
            try:
                answer = _exchange(self._conn, item_id, fields, image, attributes)
            except (EOFError, OSError):
                code = self._proc.wait() if self._proc is not None else None
                self._end_child()
                raise _ended_during_add(code) from None
        return _answer(answer)

    def keep_running(self) -> threading.Thread:
        """Start a watcher thread that starts the child again whenever it ends (until
        :meth:`close`): what the supervisor of a service with several workers does, whose
        workers only connect to the child."""

        def watch() -> None:
            while not self._closed:
                proc = self._proc
                code = proc.wait() if proc is not None else None
                if self._closed:
                    return
                print(f"mimrec: the item writer process ended (exit code {code}); starting a "
                      "new one", file=sys.stderr, flush=True)
                with self._lock:
                    try:
                        self._start()
                    except MimrecError as exc:
                        print(f"mimrec: {exc}; trying again in {RESTART_PAUSE_S:.0f} s",
                              file=sys.stderr, flush=True)
                        time.sleep(RESTART_PAUSE_S)

        thread = threading.Thread(target=watch, name="mimrec-writer-watch", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """End the child (it also ends by itself when this process ends) and stop watching it."""
        self._closed = True
        self._end_child()

    def _end_child(self) -> None:
        _close(self._conn)
        self._conn = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class WriterClient:
    """A worker's connection to the service's shared writer child (``mimrec serve --workers
    N``): the same ``write`` as :class:`WriterProcess`, over the child's Unix socket.

    Args:
        shared: where the child listens (:meth:`SharedWriter.from_env` in a worker).
    """

    def __init__(self, shared: SharedWriter) -> None:
        self.path, self.key = shared.path, shared.key
        self.text_fields: tuple[str, ...] = ()
        self.has_image_tower = False
        self._lock = threading.Lock()  # one add at a time through this connection
        self._conn: Connection | None = None
        self._connect(START_TIMEOUT_S)

    def _connect(self, within: float) -> None:
        """Connect, waiting up to ``within`` s for the child to accept (it may be starting)."""
        deadline = time.monotonic() + within
        while True:
            try:
                conn = Client(str(self.path), family="AF_UNIX", authkey=self.key)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise MimrecError(f"the item writer process does not accept adds at "
                                      f"{self.path} (waited {within:.0f} s)") from None
                time.sleep(0.1)
        try:
            self.text_fields, self.has_image_tower = _ready(conn)
        except (EOFError, OSError):
            conn.close()
            raise MimrecError("the item writer process ended while this worker connected") from None
        self._conn = conn

    def write(self, item_id: Any, fields: dict[str, Any], image: bytes | None,
              attributes: list[str] | None) -> WrittenItem:
        """As :meth:`WriterProcess.write`; a child that died is started again by the
        supervisor, and this worker connects to the new one at its next add."""
        with self._lock:
            if self._conn is None or self._conn.poll(0):  # (the child sends nothing unasked)
                self.close()
                try:
                    self._connect(CONNECT_TIMEOUT_S)
                except MimrecError as exc:
                    raise RequestError("server", f"{exc}: post it again later",
                                       status=503) from None
            assert self._conn is not None
            try:
                answer = _exchange(self._conn, item_id, fields, image, attributes)
            except (EOFError, OSError):
                self.close()
                raise _ended_during_add(None) from None
        return _answer(answer)

    def close(self) -> None:
        _close(self._conn)
        self._conn = None


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


def _serve(conn: Connection, writer: Any, lock: threading.Lock) -> None:
    """Answer each ``("write", ...)`` on ``conn`` until its other end closes; ``lock``: one add
    at a time over every connection."""
    while True:
        try:
            _, item_id, item_fields, image, attributes = conn.recv()
        except (EOFError, OSError):
            return
        try:
            with lock:
                answer: tuple = ("ok", writer.write(item_id, item_fields, image, attributes))
        except RequestError as exc:
            answer = ("request", exc.field, exc.problem, exc.status)
        except MimrecError as exc:
            answer = ("mimrec", str(exc))
        except Exception as exc:  # noqa: BLE001 - the parent answers a 500 and logs this
            answer = ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        try:
            conn.send(answer)
        except OSError:  # the worker ended while its add was written
            return


def _accept(listener: Listener, ready: tuple, writer: Any, lock: threading.Lock) -> None:
    """Serve every worker that connects, each on its own thread."""
    while True:
        try:
            conn = listener.accept()
        except (OSError, AuthenticationError):  # a client that failed the key, or hung up
            continue
        with contextlib.suppress(OSError):
            conn.send(ready)
            threading.Thread(target=_serve, args=(conn, writer, lock), daemon=True).start()


def _run(conn: Connection, run: Path, model: str, listen: Path | None, key: bytes) -> None:
    """The child: load the writer, say ready, then answer adds on ``conn`` (and, with
    ``listen``, on every connection to that socket) until the parent ends."""
    try:
        from mimrec.serve.bundle import load_writer

        writer = load_writer(run, model)
        writer.warm_up(writer.text_fields)
        listener = None
        if listen is not None:
            with contextlib.suppress(FileNotFoundError):
                listen.unlink()  # left by a writer that died
            listener = Listener(str(listen), family="AF_UNIX", authkey=key)
    except Exception as exc:  # noqa: BLE001 - told to the parent, which names it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    ready = ("ready", writer.text_fields, writer.has_image_tower)
    lock = threading.Lock()
    if listener is not None:
        threading.Thread(target=_accept, args=(listener, ready, writer, lock),
                         daemon=True).start()
    conn.send(ready)
    _serve(conn, writer, lock)  # returns when the parent's end closes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mimrec's item writer (started by the service)")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--listen", type=Path, default=None)
    args = parser.parse_args(argv)
    lowest_cpu_priority()  # first: the threads torch and LanceDB start inherit it
    from mimrec.processes import die_with_parent

    die_with_parent(args.parent)
    import torch

    torch.set_num_threads(1)
    _run(Connection(args.fd), args.run, args.model, args.listen,
         bytes.fromhex(os.environ.get(KEY_ENV, "")))


if __name__ == "__main__":
    main()
