"""``mimrec serve``: load a run's bundle and run the app under uvicorn."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mimrec.errors import MimrecError


def serve(run: Path, host: str = "127.0.0.1", port: int = 8000, model: str | None = None,
          threads: int = 1) -> None:
    """Serve ``run`` (a finished ``mimrec run`` folder) until interrupted."""
    import torch
    import uvicorn

    from mimrec.serve.app import TOKEN_ENV, create_app
    from mimrec.serve.bundle import load_bundle
    from mimrec.serve.scorer import Scorer

    if not 0 < port < 65536:
        raise MimrecError(f"--port {port}: not a TCP port")
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
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
