"""Attribute tower: vocabulary and bags."""

from __future__ import annotations

import torch

from mimrec.encoders.attributes import AttributeTower, build_vocab


def test_vocab_counts_items_not_occurrences() -> None:
    lists = [["a", "a", "b"], ["a", "c"], "b c", None]
    assert build_vocab(lists, min_count=2) == ("a", "b", "c")
    assert build_vocab([["a", "a"], ["b"]], min_count=2) == ()


def test_unknown_tokens_are_ignored_and_empty_bags_are_absent() -> None:
    tower = AttributeTower(("a", "b"), dim=4)
    out, present = tower.encode([["a", "zzz"], ["zzz"], "a b"])
    assert present.tolist() == [True, False, True]
    torch.testing.assert_close(out[0], tower.bag.weight[0])
    torch.testing.assert_close(out[2], tower.bag.weight.mean(0))
