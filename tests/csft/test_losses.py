"""The multi-level InfoNCE with space-time negatives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mimrec.csft.losses import ContrastiveBatch, MultiLevelInfoNCE, masked_info_nce, prefix
from mimrec.csft.queue import EmbeddingQueue
from mimrec.pretrain.losses import info_nce


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _batch(b: int = 6, d: int = 16, seed: int = 0, anchor_id=None, key_id=None,
           present=None) -> ContrastiveBatch:
    anchor, key = _unit(b, d, seed=seed), _unit(b, d, seed=seed + 1)
    modalities = _unit(b, 3, d, seed=seed + 2)
    return ContrastiveBatch(
        anchor, modalities,
        present if present is not None else torch.tensor([[True, False, True]] * b),
        key, anchor_id if anchor_id is not None else torch.arange(b),
        key_id if key_id is not None else torch.arange(100, 100 + b), torch.ones(b))


def _hand_info_nce(queries: torch.Tensor, candidates: torch.Tensor, scale: float) -> torch.Tensor:
    logits = scale * queries @ candidates.T
    return torch.stack([torch.logsumexp(logits[i], 0) - logits[i, i]
                        for i in range(len(queries))]).mean()


def test_empty_queue_one_worker_equals_plain_in_batch_info_nce() -> None:
    b = _batch()
    one_way = MultiLevelInfoNCE(symmetric=False)
    scale = float(one_way.scale.detach())
    assert scale == pytest.approx(1 / 0.07)
    out = one_way(b, EmbeddingQueue(16, 16))
    assert out.total.item() == pytest.approx(_hand_info_nce(b.anchor, b.key, scale).item(), rel=1e-5)
    assert out.in_batch == 6 and out.queued == 0
    both = MultiLevelInfoNCE(symmetric=True)(b)
    assert both.total.item() == pytest.approx(info_nce(b.anchor, b.key, scale).item(), rel=1e-5)


def test_batch_of_duplicates_gives_a_finite_loss() -> None:
    b = _batch(anchor_id=torch.zeros(6, dtype=torch.long), key_id=torch.ones(6, dtype=torch.long))
    loss = MultiLevelInfoNCE(1.0, 1.0, 1.0, (4, 8))(b).total
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)  # only positives


def test_same_id_candidates_are_removed_from_batch_and_queue() -> None:
    anchor, key = _unit(4, 8, seed=3), _unit(4, 8, seed=4)
    queue_keys = _unit(3, 8, seed=5)
    # key 2 repeats key 0's item; queue row 0 is anchor 1's item, row 1 is key 3's item.
    key_ids, anchor_ids = torch.tensor([10, 11, 10, 13]), torch.tensor([0, 1, 2, 3])
    queue_ids = torch.tensor([1, 13, 50])
    candidates = torch.cat([key, queue_keys])
    masked = masked_info_nce(anchor, candidates, torch.arange(4), anchor_ids,
                             torch.cat([key_ids, queue_ids]), 5.0)
    keep = [[0, 1, 3, 4, 5, 6], [0, 1, 2, 3, 5, 6], [1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 6]]
    expected = []
    for i, cols in enumerate(keep):
        logits = 5.0 * anchor[i] @ candidates[cols].T
        expected.append(torch.logsumexp(logits, 0) - logits[cols.index(i)])
    assert masked.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_queue_adds_time_negatives() -> None:
    b = _batch()
    queue = EmbeddingQueue(8, 16)
    queue.push(_unit(8, 16, seed=9), torch.arange(200, 208))
    loss_fn = MultiLevelInfoNCE(symmetric=False)
    out = loss_fn(b, queue)
    assert out.queued == 8 and out.total > loss_fn(b).total
    assert torch.equal(out.key_ids, b.key_id) and not out.keys.requires_grad


def test_aligned_pairs_score_lower_than_shuffled_ones() -> None:
    anchor = _unit(32, 16, seed=1)
    key = F.normalize(anchor + 0.1 * _unit(32, 16, seed=2), dim=-1)
    ids = torch.arange(32)
    aligned = ContrastiveBatch(anchor, anchor[:, None].expand(32, 3, 16), torch.ones(32, 3).bool(),
                               key, ids, ids + 100, torch.ones(32))
    shuffled = ContrastiveBatch(anchor, aligned.anchor_modalities, aligned.anchor_present,
                                key.roll(1, 0), ids, ids + 100, torch.ones(32))
    loss_fn = MultiLevelInfoNCE(1.0, 1.0, 1.0, (4, 8))
    assert loss_fn(aligned).total < loss_fn(shuffled).total


def test_matryoshka_level_is_the_fused_level_on_renormalised_prefixes() -> None:
    b = _batch(d=16)
    out = MultiLevelInfoNCE(0.0, 0.0, 1.0, (4, 8), symmetric=False)(b)
    scale = 1 / 0.07
    by_hand = [_hand_info_nce(prefix(b.anchor, d), prefix(b.key, d), scale) for d in (4, 8)]
    assert out.total.item() == pytest.approx(torch.stack(by_hand).mean().item(), rel=1e-5)
    assert set(out.levels) == {"matryoshka"}


def test_modality_level_uses_only_modalities_an_anchor_has() -> None:
    present = torch.tensor([[True, False, True]] * 3 + [[True, False, False]] * 3)
    b = _batch(present=present)
    loss_fn = MultiLevelInfoNCE(0.0, 1.0, 0.0)
    base = loss_fn(b).total
    b.anchor_modalities[3:, 2] = _unit(3, 16, seed=7)  # absent modality rows: ignored
    b.anchor_modalities[:, 1] = _unit(6, 16, seed=8)
    assert loss_fn(b).total.item() == pytest.approx(base.item())
    text = _hand_info_nce(b.anchor_modalities[:, 0], b.key, 1 / 0.07)
    attrs = _hand_info_nce(b.anchor_modalities[:3, 2], b.key, 1 / 0.07)
    assert base.item() == pytest.approx(((text + attrs) / 2).item(), rel=1e-5)


def test_temperature_is_clamped_and_learns() -> None:
    loss_fn = MultiLevelInfoNCE(temperature_init=0.07, max_logit_scale=10.0)
    assert float(loss_fn.scale.detach()) == pytest.approx(10.0)
    loss_fn.log_scale.data.fill_(math.log(5.0))
    b = _batch()
    loss_fn(b).total.backward()
    assert loss_fn.log_scale.grad is not None and loss_fn.log_scale.grad != 0


def test_pair_weights_weight_the_mean() -> None:
    b = _batch()
    per_row = [MultiLevelInfoNCE(symmetric=False)(
        ContrastiveBatch(b.anchor, b.anchor_modalities, b.anchor_present, b.key, b.anchor_id,
                         b.key_id, torch.eye(6)[i])).total for i in range(6)]
    b.weight = torch.tensor([3.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    weighted = MultiLevelInfoNCE(symmetric=False)(b).total
    assert weighted.item() == pytest.approx(((3 * per_row[0] + per_row[1]) / 4).item(), rel=1e-5)
