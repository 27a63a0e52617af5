"""Patterns for attention: ``(Q K^T) V`` and ``Q (K^T V)`` on spikes split into heads (``SSA``),
spike counts over tokens or a head's channels (``TokenSum`` / ``HeadSum``)."""
from __future__ import annotations


from .... import ir
from ..layout import Axes, sizes
from ..lower import Refusal, describe
from ..values import Attention, CURRENT, KV, PENDING, QK, SPIKES, Value


HEAD = "head"


def _operand(L, v: Value):
    """A spiking token operand split into heads: ``(node, batch, rows, cols, heads, tokens,
    head group)``; rows/cols are "n" (tokens) or "d" (the head's channels); in ``batch`` the
    head axis is the marker ``HEAD`` so that two operands' batch axes compare."""
    if v.kind != SPIKES or v.scale != 1.0:
        raise Refusal(f"matmul of {describe(v)}: attention multiplies spikes")
    node = L.as_form(v, token_form(L, v), "", "matmul")  # an image's spikes: their tokens
    tokens, channel = L.form(node)
    axes = L.atoms.axes(v.axes)
    if len(channel) == 2:
        head, width = (channel[0],), (channel[1],)
    elif len(channel) == 1:
        head, width = (), channel
    else:
        raise Refusal(f"matmul of {v.node}: its channels are not split as (heads, d)")
    roles = {tokens: "n", width: "d"}
    rows, cols = roles.get(axes[-2]), roles.get(axes[-1])
    if rows is None or cols is None or rows == cols:
        raise Refusal(f"matmul of {v.node}: the last two axes must be its tokens and its "
                      "head channels")
    batch = tuple(HEAD if g == head and head else g for g in axes[:-2])
    if head and batch.count(HEAD) != 1:
        raise Refusal(f"matmul of {v.node}: the heads must be one batch axis")
    L.outer_ok(v, tuple(g for g in batch if g != HEAD), "matmul")
    return node, batch, rows, cols, (head[0].size if head else 1), tokens, head


def same_positions(a: Axes, b: Axes) -> bool:
    """Two token groups torch pairs position by position (a contraction over tokens): equal
    sizes. Each operand's token axis is its own node's tokens in their order (``_operand``)."""
    return sizes(a) == sizes(b)


def _batch(batch, head) -> Axes:
    return tuple(head if g == HEAD else g for g in batch)


def matmul(L, path, args, kwargs, out):
    a, b = L.value(args[0]), L.value(args[1])
    if a is None or b is None:
        raise Refusal("matmul of non-tensors")
    if a.kind == SPIKES and b.kind == SPIKES:
        na, ba, ra, ca, ha, ta, hda = _operand(L, a)
        nb, bb, rb, cb, hb, tb, hdb = _operand(L, b)
        if ha != hb or ba != bb:
            raise Refusal(f"matmul of {na} and {nb}: their heads / batch axes differ")
        if (ra, ca, rb, cb) == ("n", "d", "d", "n"):     # Q K^T
            return Value(PENDING, pending=QK(na, nb, ha, _batch(ba, hda) + (ta, tb)))
        if (ra, ca, rb, cb) == ("d", "n", "n", "d"):     # K^T V
            if not same_positions((ta,), (tb,)):
                raise Refusal(f"K^T V of {na} and {nb}: their tokens differ")
            width_k, width_v = L.form(na)[-1][-1:], L.form(nb)[-1][-1:]
            return Value(PENDING, pending=KV(na, nb, ha, _batch(bb, hdb) + (width_k, width_v)))
        raise Refusal(f"matmul of {na} and {nb} is neither Q K^T nor K^T V")
    if a.kind == PENDING and isinstance(a.pending, QK) and b.kind == SPIKES:
        p = a.pending
        nb, bb, rb, cb, hb, tb, hdb = _operand(L, b)
        if (rb, cb) != ("n", "d") or hb != p.heads or not same_positions((L.form(p.k)[0],),
                                                                           (tb,)):
            raise Refusal(f"(Q K^T) V: {nb} is not a value tensor over the keys' tokens")
        batch_qk = tuple(HEAD if g == L.form(p.q)[-1][:1] and p.heads > 1 else g
                         for g in L.atoms.axes(p.axes)[:-2])
        if batch_qk != bb:
            raise Refusal(f"(Q K^T) V: the batch axes of {nb} differ from Q K^T's")
        return Value(PENDING, pending=Attention(
            p.q, p.k, nb, p.heads, _batch(bb, hdb) + (L.form(p.q)[0], L.form(nb)[-1][-1:]),
            p.scale))
    if a.kind == SPIKES and b.kind == PENDING and isinstance(b.pending, KV):
        p = b.pending
        na, ba, ra, ca, ha, ta, hda = _operand(L, a)
        if (ra, ca) != ("n", "d") or ha != p.heads:
            raise Refusal(f"Q (K^T V): {na} is not a query tensor")
        batch_kv = tuple(HEAD if g == L.form(p.v)[-1][:1] and p.heads > 1 else g
                         for g in L.atoms.axes(p.axes)[:-2])
        if batch_kv != ba:
            raise Refusal(f"Q (K^T V): the batch axes of {na} differ from K^T V's")
        head_v = L.form(p.v)[-1]
        return Value(PENDING, pending=Attention(na, p.k, p.v, p.heads,
                                                _batch(ba, head_v[:1] if p.heads > 1 else ())
                                                + (ta, head_v[-1:]), p.scale))
    raise Refusal(f"matmul of {describe(a)} and {describe(b)} is not an attention product")


def spike_count(L, path, v: Value, dims) -> Value:
    """``x.sum(dim, keepdim=True)`` of spikes: a count over the tokens (``TokenSum``, SDSA and
    QKFormer's channel attention) or over each head's channels (``HeadSum``, QKFormer's token
    attention); the count is the input current of the neuron that reads it."""
    if v.kind != SPIKES or v.scale != 1.0:
        raise Refusal(f"counts {describe(v)}; only spikes are counted (sum with keepdim=True)")
    axes = L.atoms.axes(v.axes)
    gone = {a for d in dims for a in axes[d]}
    node = L.as_form(v, token_form(L, v), path, "sum")
    tokens, channel = L.form(node)
    kept = tuple(() if d in dims else g for d, g in enumerate(v.axes))
    if gone == set(tokens):
        name = L.add_node(("token_sum", node), f"{path}.token_sum", ir.TokenSum(), [node],
                          ((), channel), CURRENT)
    elif len(channel) == 2 and gone == {channel[1]}:
        name = L.add_node(("head_sum", node, channel[0].size), f"{path}.head_sum",
                          ir.HeadSum(channel[0].size), [node], (tokens, channel[:1]), CURRENT)
    else:
        raise Refusal("sums spikes over axes that are neither the tokens nor a head's channels")
    return Value(CURRENT, name, kept)


def token_form(L, v: Value) -> Axes:
    """The (tokens, channels) form of a node: itself, or the tokens of an image."""
    form = L.form(v.node)
    if len(form) == 3:
        return (form[1] + form[2], form[0])
    if len(form) != 2:
        raise Refusal(f"{v.node} is not a token or image tensor")
    return form
