"""``mimrec serve``: load a run's bundle and run the app under uvicorn."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mimrec.errors import MimrecError
from mimrec.processes import remove_stale_temps

if TYPE_CHECKING:
    from mimrec.serve.writer_process import WriterProcess


def serve(run: Path, host: str = "127.0.0.1", port: int = 8000, model: str | None = None,
          threads: int = 1, workers: int = 1, allowed_hosts: tuple[str, ...] = (),
          access_log: bool = False) -> None:
    """Serve ``run`` (a finished ``mimrec run`` folder) until interrupted.

    With ``workers`` > 1, uvicorn runs that many processes, each with its own copy of the bundle
    (this supervisor process only checks the bundle, :func:`~mimrec.serve.bundle.check_bundle`:
    it never holds the model or the store's rows; with writes enabled it starts the one item
    writer process the workers share, :func:`start_shared_writer`); an item added through one
    is seen by the others at their next request (each request asks the store for its latest
    version), and
    ``/metrics`` sums over the workers; a busy worker hands keep-alive connections over to idle
    ones (:mod:`mimrec.serve.protocol`).
    ``allowed_hosts``: the host names requests may name (default:
    :func:`default_hosts`). ``access_log``: one line per request on stderr (uvicorn's access
    log: client, method, path, status); off by default.
    """
    import uvicorn

    from mimrec.serve.app import (
        ALLOWED_HOSTS_ENV,
        READ_TOKEN_ENV,
        TOKEN_ENV,
        create_app,
        serving_scorer,
        set_up_serving_process,
    )
    from mimrec.serve.bundle import check_bundle
    from mimrec.serve.heap import keep_request_memory, settle_heap
    from mimrec.serve.metrics import MULTIPROC_ENV
    from mimrec.serve.protocol import WORKERS_ENV, BoundedHttpToolsProtocol

    if not 0 < port < 65536:
        raise MimrecError(f"--port {port}: not a TCP port")
    if workers < 1:
        raise MimrecError(f"--workers {workers}: must be at least 1")
    if threads < 0:
        raise MimrecError(f"--threads {threads}: must be 0 (torch's default) or more")
    check_port_free(host, port)  # before the bundle loads, not after
    token = os.environ.get(TOKEN_ENV) or None
    read_token = os.environ.get(READ_TOKEN_ENV) or None
    hosts = allowed_hosts or default_hosts(host)
    writes = ("enabled (bearer token from " + TOKEN_ENV + ")" if token
              else f"disabled (set {TOKEN_ENV} to enable POST /v1/items)")
    if workers == 1:
        set_up_serving_process(threads)  # (workers set themselves up: app_from_env)
        scorer = serving_scorer(run, model, writes=token is not None)
        key, count, can_add = scorer.bundle.model_key, scorer.catalogue.count, scorer.can_add_items
    else:  # the workers load the bundle; this process only checks it (no model, no store rows)
        scorer = None
        key, stored = check_bundle(run, model)
        count, can_add = stored, stored is not None
    if not can_add:
        writes = "not possible: this model reads no content vectors"
    reads = ("token" if token or read_token
             else f"off (set {READ_TOKEN_ENV} or {TOKEN_ENV} to browse users)")
    items = f" ({count:,} items)" if count is not None else ""
    print(f"mimrec: serving {key} of {run}{items} at "
          f"http://{host}:{port}  docs: /docs  item writes: {writes}  users/metrics: {reads}  "
          f"trusted hosts: {', '.join(hosts)}  access log: {'on' if access_log else 'off'}",
          file=sys.stderr, flush=True)
    options = {"host": host, "port": port, "log_level": "info" if access_log else "warning",
               "access_log": access_log, "http": BoundedHttpToolsProtocol}
    if scorer is not None:
        app = create_app(scorer, token, read_token=read_token, allowed_hosts=hosts)
        settle_heap()
        keep_request_memory()
        uvicorn.run(app, **options)
        return
    folder = service_folder()
    metrics_dir = folder / "metrics"  # /metrics sums over the workers
    metrics_dir.mkdir()
    writer = None
    try:
        os.environ.update({"MIMREC_RUN": str(run), "MIMREC_MODEL": model or "",
                           "MIMREC_THREADS": str(threads), ALLOWED_HOSTS_ENV: ",".join(hosts),
                           MULTIPROC_ENV: str(metrics_dir), WORKERS_ENV: str(workers)})
        if token is not None and can_add:  # one writer for every worker
            writer = start_shared_writer(run, key, folder)
        uvicorn.run("mimrec.serve.app:app_from_env", factory=True, workers=workers, **options)
    finally:
        if writer is not None:
            writer.close()
        shutil.rmtree(folder, ignore_errors=True)


def service_folder() -> Path:
    """A new private folder (mode 0700) for a multi-worker service's writer socket and metrics,
    named ``mimrec-serve-*.tmp-<pid>`` in the system's temporary folder; the folders of services
    that were killed (``kill -9`` leaves no chance to remove one) are removed first."""
    tmp = Path(tempfile.gettempdir())
    remove_stale_temps(tmp, "mimrec-serve-*.tmp-*")
    return Path(tempfile.mkdtemp(prefix="mimrec-serve-", suffix=f".tmp-{os.getpid()}", dir=tmp))


def start_shared_writer(run: Path, key: str, folder: Path) -> WriterProcess:
    """Start the item writer process the workers share (it listens in ``folder``), name it to
    them through the environment, and keep it running."""
    from mimrec.serve.writer_process import SharedWriter, WriterProcess

    shared = SharedWriter.new(folder)
    writer = WriterProcess(run, key, shared=shared)
    os.environ.update(shared.env())
    writer.keep_running()
    return writer


def default_hosts(host: str) -> tuple[str, ...]:
    """Trusted ``Host`` names when none are given: loopback names, plus the bound address, plus
    this machine's names when bound to every address (``0.0.0.0`` / ``::``)."""
    import socket

    from mimrec.serve.access import LOOPBACK_HOSTS

    names = [*LOOPBACK_HOSTS, host]
    if host in ("0.0.0.0", "::", ""):
        names = [*LOOPBACK_HOSTS, socket.gethostname(), socket.getfqdn()]
    return tuple(dict.fromkeys(n for n in names if n))


def check_port_free(host: str, port: int) -> None:
    """A clear error when ``host:port`` cannot be bound (in use, or not a local address)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise MimrecError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise MimrecError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
