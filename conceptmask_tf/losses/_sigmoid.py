"""Element-wise sigmoid cross-entropy from logits (private)."""

from __future__ import annotations

from keras import ops


def sigmoid_cross_entropy(labels, logits):
    """-z log s(x) - (1 - z) log(1 - s(x)) element-wise, stable for any logit x.

    = max(x, 0) - x z + log(1 + exp(-|x|)), with max and |.| written as one `where` so
    the gradient at x = 0 is the true s(0) - z (relu and abs have subgradient 0 there).
    """
    positive = logits >= 0
    relu_logits = ops.where(positive, logits, 0.0)
    neg_abs_logits = ops.where(positive, -logits, logits)
    return relu_logits - logits * labels + ops.log1p(ops.exp(neg_abs_logits))
