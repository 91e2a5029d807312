"""DIN target attention: the split, packed computation equals the textbook one."""

import pytest
import torch

from mimrec.ctr.modules import TargetAttention


def reference(att: TargetAttention, query, keys, mask):
    """DIN as written: an MLP on [q, k, q - k, q * k] for every position, masked afterwards."""
    q = query.unsqueeze(1).expand_as(keys)
    logits = att.rest(torch.relu(att.first(torch.cat([q, keys, q - keys, q * keys], -1))))
    logits = logits.squeeze(-1)
    if att.softmax:
        weights = logits.masked_fill(~mask, float("-inf")).softmax(-1).nan_to_num(0.0)
    else:
        weights = logits * mask
    return torch.einsum("bl,bld->bd", weights, keys), weights


@pytest.mark.parametrize("softmax", [False, True])
def test_packed_attention_equals_the_dense_formula_and_its_gradients(softmax):
    torch.manual_seed(0)
    att = TargetAttention(6, (8, 4), softmax)
    table = torch.randn(20, 6, requires_grad=True)  # catalogue rows
    index = torch.randint(1, 20, (5, 7))
    index[:, :3] = 0  # left padding
    index[4] = 0  # a sample without behaviour
    mask = index > 0
    query = torch.randn(5, 6)
    ref, ref_w = reference(att, query, table[index], mask)
    for kwargs in ({"keys": table, "index": index}, {"keys": table[index]}):
        out, w = att(query, mask=mask, **kwargs)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)
    assert torch.all(out[4] == 0)
    grads = [torch.autograd.grad(o.square().sum(), [table, att.first.weight])
             for o in (ref, att(query, table, mask, index=index)[0])]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
