"""Two gloo workers: each sees both workers' keys, and together they reproduce the single-process
loss and gradient on the concatenated batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mimrec.csft import distributed as dist
from mimrec.csft.losses import ContrastiveBatch, MultiLevelInfoNCE
from mimrec.csft.queue import EmbeddingQueue

WORLD, B, D, IN = 2, 5, 8, 6


def _inputs() -> dict[str, torch.Tensor]:
    """The global batch: raw inputs of 2B pairs, ids with duplicates across workers."""
    g = torch.Generator().manual_seed(0)
    return {"anchor": torch.randn(WORLD * B, IN, generator=g),
            "key": torch.randn(WORLD * B, IN, generator=g),
            "anchor_id": torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 1, 9]),
            "key_id": torch.tensor([20, 21, 22, 23, 24, 20, 26, 27, 28, 29]),
            "weight": torch.linspace(0.5, 1.5, WORLD * B)}


def _model() -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(IN, D)


def _loss_and_grads(rows: slice) -> tuple[float, int, np.ndarray, float]:
    """Loss, in-batch candidates, summed weight gradient and temperature gradient on ``rows``."""
    x, model = _inputs(), _model()
    loss_fn = MultiLevelInfoNCE(1.0, 0.5, 0.5, (4,), symmetric=True)
    queue = EmbeddingQueue(4, D)
    queue.push(F.normalize(torch.randn(4, D, generator=torch.Generator().manual_seed(2)), dim=-1),
               torch.tensor([21, 3, 40, 41]))
    anchor = F.normalize(model(x["anchor"][rows]), dim=-1)
    key = F.normalize(model(x["key"][rows]), dim=-1)
    n = anchor.shape[0]
    batch = ContrastiveBatch(anchor, torch.stack([anchor, key], 1), torch.ones(n, 2).bool(), key,
                             x["anchor_id"][rows], x["key_id"][rows], x["weight"][rows])
    out = loss_fn(batch, queue)
    out.total.backward()
    dist.all_reduce_gradients(model.parameters())
    return (float(out.total.detach()), out.in_batch, model.weight.grad.numpy().copy(),
            float(loss_fn.log_scale.grad))


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                  world_size=WORLD)
    try:
        from mimrec.csft.train import worker_batches

        loss, in_batch, grad, scale_grad = _loss_and_grads(slice(rank * B, (rank + 1) * B))
        batches = list(worker_batches(23, 3, np.random.default_rng(0)))
        np.savez(Path(out_dir) / f"rank{rank}.npz", loss=loss, in_batch=in_batch, grad=grad,
                 scale_grad=scale_grad, world=dist.world_size(), batches=np.stack(batches))
    finally:
        torch_dist.destroy_process_group()


def test_two_workers_equal_one_process_on_the_concatenated_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    loss, in_batch, grad, scale_grad = _loss_and_grads(slice(None))
    assert in_batch == WORLD * B
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(WORLD)]
    for r in ranks:
        assert int(r["world"]) == WORLD and int(r["in_batch"]) == WORLD * B
        assert float(r["loss"]) == np.float32(loss) or np.isclose(r["loss"], loss, rtol=1e-5)
        np.testing.assert_allclose(r["grad"], grad, rtol=1e-4, atol=1e-6)
        assert np.isclose(r["scale_grad"], scale_grad, rtol=1e-4, atol=1e-7)
    # the workers' slices partition each global batch of WORLD x 3 pairs
    single = np.random.default_rng(0).permutation(23)[: (23 // 6) * 6].reshape(-1, 6)
    joined = np.concatenate([ranks[0]["batches"], ranks[1]["batches"]], axis=1)
    np.testing.assert_array_equal(joined, single)
