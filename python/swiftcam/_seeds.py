"""Gradient seeds: d(score)/d(logits) for each image's targets, as the engine expects them.

The engine's backward pass starts from seeds of shape (N, K, num_classes): K scores per image.
Targets (see :mod:`swiftcam.utils.model_targets`) provide ``gradient(logits_row)``; a plain
int is taken as ``ClassifierOutputTarget(int)``.
"""

import operator

import numpy as np

from .errors import InvalidInputError
from .utils.model_targets import ClassifierOutputTarget

__all__ = ["Seeds", "seeds_for_targets", "seeds_for_top_k"]


class Seeds:
    """Seeds (N, K, num_classes) float32 with the classes (N, K) and scores (N, K) they stand for.

    ``classes`` is -1 where a target has no single class.
    """

    def __init__(self, seeds, classes, scores):
        self.seeds = seeds
        self.classes = classes
        self.scores = scores

    @property
    def k(self):
        return self.seeds.shape[1]


def resolve_targets(targets, logits, name="targets"):
    """One target object per image; None means each image's argmax."""
    n = logits.shape[0]
    if targets is None:
        return [ClassifierOutputTarget(int(c)) for c in np.argmax(logits, axis=1)]
    if callable(getattr(targets, "gradient", None)):
        raise TypeError(f"{name}: expected a list with one target per image, got a single "
                        f"target; use {name}=[{targets!r}] * {n}")
    if isinstance(targets, (str, bytes)):
        raise TypeError(f"{name}: expected a list of targets, got {type(targets).__name__}")
    targets = list(targets)
    if len(targets) != n:
        raise InvalidInputError(
            f"{name}: got {len(targets)} target(s) for a batch of {n} image(s); pass exactly "
            "one target per image (pytorch-grad-cam silently ignores the extra ones)")
    resolved = []
    for target in targets:
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            target = ClassifierOutputTarget(operator.index(target))
        resolved.append(target)
    return resolved


def target_gradient(target, logits_row, n, name="targets"):
    """Validated ``target.gradient(logits_row)`` as float32 (num_classes,)."""
    gradient = getattr(target, "gradient", None)
    if not callable(gradient):
        raise TypeError(
            f"{name}[{n}]: {type(target).__name__} has no gradient(logits_row) method; "
            "swiftcam needs d(score)/d(logits) for each target: use ClassifierOutputTarget, "
            "ClassifierOutputSoftmaxTarget or ClassifierOutputLinearTarget, or add the method")
    try:
        seed = np.asarray(gradient(logits_row), dtype=np.float32)
    except InvalidInputError as error:
        raise InvalidInputError(f"{name}[{n}]: {error}") from None
    if seed.shape != logits_row.shape:
        raise InvalidInputError(f"{name}[{n}]: gradient() returned shape {seed.shape}, "
                                f"expected {logits_row.shape}")
    if not np.all(np.isfinite(seed)):
        raise InvalidInputError(f"{name}[{n}]: gradient() returned non-finite values")
    return seed


def target_class(target):
    """The class a target explains, or -1."""
    category = getattr(target, "category", None)
    if isinstance(category, (int, np.integer)) and not isinstance(category, bool):
        return int(category)
    return -1


def seeds_for_targets(targets, logits, name="targets"):
    """Seeds (N, 1, num_classes) for one target per image (None: the argmax)."""
    chosen = resolve_targets(targets, logits, name)
    n, num_classes = logits.shape
    seeds = np.empty((n, 1, num_classes), dtype=np.float32)
    classes = np.empty((n, 1), dtype=np.int64)
    scores = np.empty((n, 1), dtype=np.float64)
    for i, target in enumerate(chosen):
        seeds[i, 0] = target_gradient(target, logits[i], i, name)
        classes[i, 0] = target_class(target)
        scores[i, 0] = float(target(logits[i]))
    return Seeds(seeds, classes, scores)


def seeds_for_top_k(logits, k):
    """One-hot seeds (N, k, num_classes) for each image's k highest logits, highest first."""
    n, num_classes = logits.shape
    classes = np.argsort(-logits, axis=1, kind="stable")[:, :k].astype(np.int64)
    seeds = np.zeros((n, k, num_classes), dtype=np.float32)
    seeds[np.arange(n)[:, None], np.arange(k)[None, :], classes] = 1.0
    scores = np.take_along_axis(logits, classes, axis=1).astype(np.float64)
    return Seeds(seeds, classes, scores)
