"""Gathers and bag embeddings of the CTR model: faster forms, the same numbers."""

import pytest
import torch

from mimrec.ctr.modules import BagEmbedding, masked_mean, take_rows


@pytest.mark.parametrize("shape", [(7,), (4, 5), (2, 3, 2)])
def test_take_rows_equals_advanced_indexing(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    for table in (torch.randn(50, 3, generator=gen), torch.arange(50), torch.randn(50, 2, 4)):
        index = torch.randint(0, 50, shape, generator=gen)
        assert torch.equal(take_rows(table, index), table[index])
    table = torch.randn(50, 3, generator=gen)
    for index in (slice(3, 9), slice(None, None, 7), 4, [5, 1, 5]):  # as indexing takes them
        assert torch.equal(take_rows(table, index), table[index])
    weights = torch.randn(50, 8, requires_grad=True)
    index = torch.randint(0, 50, (6, 4), generator=gen)
    grad = torch.randn(6, 4, 8, generator=gen)
    (take_rows(weights, index) * grad).sum().backward()
    ours, weights.grad = weights.grad, None
    (weights[index] * grad).sum().backward()
    assert torch.equal(ours, weights.grad)


@pytest.mark.parametrize("width", [1, 3, 5])
@pytest.mark.parametrize("sparse", [False, True])
def test_bag_embedding_is_the_masked_mean_in_both_passes(width: int, sparse: bool) -> None:
    torch.manual_seed(0)
    bag = BagEmbedding(30, 16)
    bag.embedding.sparse = sparse
    with torch.no_grad():  # a trained-looking table; row 0 is the padding row, zero
        bag.embedding.weight.normal_()
        bag.embedding.weight[0].zero_()
    index = torch.randint(0, 30, (700, width))
    index[::3] = 0  # empty bags
    index[1::4, 1:] = 0  # bags shorter than the width
    grad = torch.randn(700, 16)
    ours = bag(index)
    ours.backward(grad)
    our_grad = bag.embedding.weight.grad.to_dense()
    bag.embedding.weight.grad = None
    mask = (index > 0).unsqueeze(-1).float()
    reference = masked_mean(bag.embedding(index), mask)
    reference.backward(grad)
    assert torch.equal(ours, reference)
    assert torch.equal(our_grad, bag.embedding.weight.grad.to_dense())
    assert not bag.embedding.weight.grad.to_dense()[0].any()  # padding row: no gradient


def test_histories_index_like_a_tensor_by_slice_or_rows() -> None:
    from mimrec.ctr.train import Histories

    seq = torch.arange(10, 30)  # catalogue rows of the stored sequences (model index = row + 1)
    end = torch.tensor([0, 3, 5, 9, 20])
    length = torch.tensor([0, 3, 2, 4, 3], dtype=torch.int32)
    histories = Histories(seq, end, length, max_len=3)
    by_rows = histories[torch.arange(1, 4)]
    assert torch.equal(by_rows, torch.tensor([[11, 12, 13], [0, 14, 15], [17, 18, 19]]))
    assert torch.equal(histories[1:4], by_rows)  # a slice, as benchmarks take a split's head
    assert torch.equal(histories[[4]], torch.tensor([[28, 29, 30]]))
