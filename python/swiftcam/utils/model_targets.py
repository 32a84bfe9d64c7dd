"""CAM targets: which score of the model's output a CAM explains.

Named and called as in ``pytorch_grad_cam.utils.model_targets``: ``target(model_output)`` returns
the score for one output row (or a column for a batch). In addition, every swiftcam target
provides ``gradient(logits_row)``, the derivative of its score with respect to the logits, a
float32 vector of length ``num_classes``: the seed the engine pushes through the backward pass.

A custom target is any object with both methods; scores linear in the logits are covered by
:class:`ClassifierOutputLinearTarget`.
"""

import operator
from collections.abc import Mapping

import numpy as np

from ..errors import InvalidInputError

__all__ = ["ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget",
           "ClassifierOutputLinearTarget"]


def _category(category):
    if isinstance(category, bool):
        raise TypeError(f"category must be an int class index, got {category!r}")
    try:
        value = operator.index(category)
    except TypeError:
        raise TypeError(f"category must be an int class index, got "
                        f"{type(category).__name__}") from None
    if value < 0:
        raise InvalidInputError(f"category must be a non-negative class index, got {value}")
    return value


def _logits_row(logits_row):
    row = np.asarray(logits_row, dtype=np.float64)
    if row.ndim != 1:
        raise InvalidInputError(f"expected one row of logits (num_classes,), got shape "
                                f"{row.shape}")
    return row


def _check_in_range(category, num_classes):
    if category >= num_classes:
        raise InvalidInputError(f"class index {category} is out of range for a model with "
                                f"{num_classes} classes")


def _softmax(row):
    shifted = np.exp(row - row.max())
    return shifted / shifted.sum()


class ClassifierOutputTarget:
    """The raw logit of class ``category`` (not its softmax probability)."""

    def __init__(self, category):
        self.category = _category(category)

    def __call__(self, model_output):
        if len(model_output.shape) == 1:
            return model_output[self.category]
        return model_output[:, self.category]

    def gradient(self, logits_row):
        """One-hot at ``category``: d(logit_c)/d(logits)."""
        row = _logits_row(logits_row)
        _check_in_range(self.category, row.shape[0])
        seed = np.zeros(row.shape[0], dtype=np.float32)
        seed[self.category] = 1.0
        return seed

    def __repr__(self):
        return f"{type(self).__name__}({self.category})"


class ClassifierOutputSoftmaxTarget:
    """The softmax probability of class ``category``."""

    def __init__(self, category):
        self.category = _category(category)

    def __call__(self, model_output):
        if hasattr(model_output, "softmax"):  # a torch tensor
            probabilities = model_output.softmax(dim=-1)
        else:
            values = np.asarray(model_output, dtype=np.float64)
            shifted = np.exp(values - values.max(axis=-1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        if len(probabilities.shape) == 1:
            return probabilities[self.category]
        return probabilities[:, self.category]

    def gradient(self, logits_row):
        """d(p_c)/d(logits) = p_c (e_c - p), computed in float64."""
        row = _logits_row(logits_row)
        _check_in_range(self.category, row.shape[0])
        p = _softmax(row)
        seed = -p[self.category] * p
        seed[self.category] += p[self.category]
        return seed.astype(np.float32)

    def __repr__(self):
        return f"{type(self).__name__}({self.category})"


class ClassifierOutputLinearTarget:
    """A weighted sum of logits, e.g. "class a minus class b".

    Parameters
    ----------
    weights : Mapping[int, float] or array_like
        Either ``{class index: weight}`` (``{281: 1.0, 5: -1.0}`` explains what makes the image
        class 281 rather than class 5) or a dense vector of length ``num_classes``.
    """

    def __init__(self, weights):
        if isinstance(weights, Mapping):
            self.weights = {_category(c): float(w) for c, w in weights.items()}
            self._dense = None
        else:
            dense = np.asarray(weights, dtype=np.float64)
            if dense.ndim != 1:
                raise InvalidInputError(f"weights: expected a 1-D vector, got shape "
                                        f"{dense.shape}")
            self._dense = dense
            self.weights = {int(c): float(dense[c]) for c in np.flatnonzero(dense)}

    def __call__(self, model_output):
        score = 0
        for category, weight in self.weights.items():
            if len(model_output.shape) == 1:
                score = score + weight * model_output[category]
            else:
                score = score + weight * model_output[:, category]
        return score

    def gradient(self, logits_row):
        """The weights themselves, as a dense float32 vector."""
        row = _logits_row(logits_row)
        num_classes = row.shape[0]
        if self._dense is not None and self._dense.shape[0] != num_classes:
            raise InvalidInputError(f"weights: {self._dense.shape[0]} entries for a model with "
                                    f"{num_classes} classes")
        seed = np.zeros(num_classes, dtype=np.float32)
        for category, weight in self.weights.items():
            _check_in_range(category, num_classes)
            seed[category] = weight
        return seed

    def __repr__(self):
        return f"{type(self).__name__}({self.weights})"
