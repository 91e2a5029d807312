"""A trained CTR model as an ONNX graph: ``(user, item, history) -> click probability``.

The graph holds the model with its catalogue tables (item vectors, content vectors, each
block's precomputed part) computed once and stored as constants, as serving computes them once.
Inputs are model indices (0 = padding / unknown): ``user`` (B,) int64, ``item`` (B,) int64,
``history`` (B, L) int64, left-padded to the model's ``max_seq_len`` L; the batch size is free.
The users' stored side features are read (explicit side features are a serving option only).

Needs the ``onnx`` extra (``pip install 'mimrec[onnx]'``: onnx, onnxscript; onnxruntime to run
the graph).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mimrec.ctr.model import CiUBM
from mimrec.errors import MimrecError

INPUTS = ("user", "item", "history")
OUTPUT = "probability"


class ScoringGraph(nn.Module):
    """A model with frozen catalogue tables, returning click probabilities.

    Shapes: ``user`` (B,), ``item`` (B,), ``history`` (B, L) -> (B,).
    """

    def __init__(self, model: CiUBM) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.model.trim_history = False  # a data-dependent slice has no static graph
        with torch.no_grad():
            self.tables = self.model.catalogue_tables()

    def forward(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor
                ) -> torch.Tensor:
        return torch.sigmoid(self.model(user, item, history, tables=self.tables))


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Hide the exporter's progress prints and warnings (they are not the user's to act on)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch.onnx").setLevel(level)


def export_onnx(model: CiUBM, path: str | Path, history_length: int) -> Path:
    """Write ``model`` as an ONNX graph to ``path`` (written to a temporary file first).

    Args:
        model: a trained model (moved to the CPU for the export; the original is untouched).
        path: the ``.onnx`` file.
        history_length: L, the history width the graph takes (the run's ``max_seq_len``).

    Returns the path.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MimrecError("ONNX export needs the onnx package: pip install 'mimrec[onnx]'") from None
    path = Path(path)
    graph = ScoringGraph(model.cpu())
    batch = 2
    example = (torch.ones(batch, dtype=torch.long), torch.ones(batch, dtype=torch.long),
               torch.ones(batch, history_length, dtype=torch.long))
    tmp = path.with_name(f".{path.name}.tmp")
    b = torch.export.Dim("batch", min=1)
    with torch.no_grad(), quiet_export():
        program = torch.onnx.export(graph, example, input_names=list(INPUTS),
                                    output_names=[OUTPUT], dynamo=True, verbose=False,
                                    dynamic_shapes={"user": {0: b}, "item": {0: b},
                                                    "history": {0: b}})
        program.save(str(tmp))
    tmp.replace(path)
    return path
