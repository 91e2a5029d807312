"""``mimrec serve``: load a run's bundle and run the app under uvicorn."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mimrec.errors import MimrecError


def serve(run: Path, host: str = "127.0.0.1", port: int = 8000, model: str | None = None,
          threads: int = 1, workers: int = 1) -> None:
    """Serve ``run`` (a finished ``mimrec run`` folder) until interrupted.

    With ``workers`` > 1, uvicorn runs that many processes, each with its own copy of the bundle;
    an item added through one is seen by the others at their next request (they follow the
    store's ``CURRENT.json``).
    """
    import torch
    import uvicorn

    from mimrec.serve.app import TOKEN_ENV, create_app
    from mimrec.serve.bundle import load_bundle
    from mimrec.serve.scorer import Scorer

    if not 0 < port < 65536:
        raise MimrecError(f"--port {port}: not a TCP port")
    if workers < 1:
        raise MimrecError(f"--workers {workers}: must be at least 1")
    check_port_free(host, port)  # before the bundle loads, not after
    if threads > 0:
        torch.set_num_threads(threads)
    bundle = load_bundle(run, model)
    scorer = Scorer(bundle)
    token = os.environ.get(TOKEN_ENV) or None
    app = create_app(scorer, token)
    writes = ("enabled (bearer token from " + TOKEN_ENV + ")" if token
              else f"disabled (set {TOKEN_ENV} to enable POST /v1/items)")
    if not scorer.can_add_items:
        writes = "not possible: this model reads no content vectors"
    print(f"mimrec: serving {bundle.model_key} of {run} ({len(scorer.catalogue.ids):,} items) at "
          f"http://{host}:{port}  docs: /docs  item writes: {writes}", file=sys.stderr, flush=True)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        return
    del app, scorer, bundle  # checked above; each worker process loads its own copy
    os.environ.update({"MIMREC_RUN": str(run), "MIMREC_MODEL": model or "",
                       "MIMREC_THREADS": str(threads)})
    uvicorn.run("mimrec.serve.app:app_from_env", factory=True, workers=workers, host=host,
                port=port, log_level="warning", access_log=False)


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
