"""Stage-1 losses: aligned pairs beat shuffled ones; masked false negatives do not count."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mimrec.pretrain.losses import SymmetricInfoNCE, info_nce, simcse_loss


def _pairs(n: int = 32, d: int = 16, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    b = F.normalize(a + noise * torch.randn(n, d, generator=g), dim=-1)
    return a, b


def test_matched_pairs_have_lower_loss_than_shuffled() -> None:
    a, b = _pairs()
    loss = SymmetricInfoNCE()
    shuffled = b[torch.randperm(len(b), generator=torch.Generator().manual_seed(1))]
    assert loss(a, b) < loss(a, shuffled) - 1.0


def test_loss_is_symmetric_in_its_two_sides() -> None:
    a, b = _pairs()
    torch.testing.assert_close(info_nce(a, b, 10.0), info_nce(b, a, 10.0))


def test_same_group_duplicates_are_not_negatives() -> None:
    e = torch.eye(4)
    a = e[[0, 0, 1, 1, 2]]  # two images of class 0, two of class 1, one of class 2
    b = e[[0, 0, 1, 1, 2]]  # their class texts
    groups = torch.tensor([0, 0, 1, 1, 2])
    unmasked = info_nce(a, b, 100.0)
    masked = info_nce(a, b, 100.0, groups)
    assert unmasked > 0.5 * math.log(2)  # a duplicate positive splits the probability
    assert masked < 1e-6


def test_temperature_starts_at_init_and_is_clamped() -> None:
    loss = SymmetricInfoNCE(temperature_init=0.07, max_logit_scale=100.0)
    assert abs(1 / loss.scale.item() - 0.07) < 1e-6
    with torch.no_grad():
        loss.log_scale.fill_(10.0)
    assert abs(loss.scale.item() - 100.0) < 1e-3


def test_temperature_is_learned() -> None:
    a, b = _pairs(noise=0.01)
    loss = SymmetricInfoNCE()
    loss(a, b).backward()
    assert loss.log_scale.grad is not None and loss.log_scale.grad.abs() > 0


def test_simcse_prefers_views_of_the_same_text() -> None:
    z, noisy = _pairs(noise=0.2)
    assert simcse_loss(z, noisy) < simcse_loss(z, noisy.roll(1, 0))
