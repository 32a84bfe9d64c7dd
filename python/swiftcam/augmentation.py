"""Test-time augmentation smoothing (``aug_smooth=True``), as pytorch-grad-cam 1.5.7 does it.

The reference (``BaseCAM.forward_augmentation_smoothing``) iterates over ttach's
``Compose([HorizontalFlip(), Multiply(factors=[0.9, 1, 1.1])])``: six transforms, in this
order (flip, factor):

    (no, 0.9), (no, 1), (no, 1.1), (yes, 0.9), (yes, 1), (yes, 1.1)

Each one augments the input (flip the width axis, then multiply by the factor in float32; the
factor 1 is skipped), computes the CAM with the SAME targets argument (so ``targets=None``
takes the argmax of each augmented input, as the reference), de-augments the map (flips it
back; multiplying needs no undoing) and the six maps are averaged in float32
(``np.mean(np.float32(cams), axis=0)``).

Without torch and ttach: the flips and products are exact in NumPy, so the augmented inputs
are bit-identical to the reference's.
"""

import dataclasses

import numpy as np

__all__ = ["TRANSFORMS", "augment", "deaugment", "aug_smooth", "smooth_explanation"]

#: (horizontal flip, brightness factor) in ttach's iteration order.
TRANSFORMS = ((False, 0.9), (False, 1.0), (False, 1.1), (True, 0.9), (True, 1.0), (True, 1.1))

#: Position of the identity transform in TRANSFORMS.
IDENTITY = 1


def augment(batch, flip, factor):
    """The augmented (N, C, H, W) batch: flipped along the width, then multiplied (float32)."""
    batch = np.asarray(batch, dtype=np.float32)
    if flip:
        batch = batch[..., ::-1]
    if factor != 1:
        batch = batch * np.float32(factor)
    return np.ascontiguousarray(batch, dtype=np.float32)


def deaugment(maps, flip):
    """Undo ``augment`` on maps (..., H, W): flip back along the width."""
    maps = np.asarray(maps)
    return np.ascontiguousarray(maps[..., ::-1]) if flip else maps


def aug_smooth(compute, input_tensor, transforms=TRANSFORMS):
    """Average of the de-augmented CAMs of the augmented inputs.

    Parameters
    ----------
    compute : callable
        ``compute(batch) -> heatmaps`` for a float32 (N, C, H, W) batch, returning
        (N, ..., H, W) maps (e.g. ``lambda b: cam(b, targets)``).
    input_tensor : array_like, (N, C, H, W)
    transforms : sequence of (bool, float)
        (flip, factor) pairs; the default is the reference's six.

    Returns
    -------
    numpy.ndarray, float32
        The mean over transforms, as ``np.mean(np.float32(cams), axis=0)``.
    """
    batch = np.asarray(input_tensor, dtype=np.float32)
    cams = [deaugment(compute(augment(batch, flip, factor)), flip)
            for flip, factor in transforms]
    return np.mean(np.float32(cams), axis=0)


def smooth_explanation(explain, batch):
    """``aug_smooth`` for a function returning a :class:`~swiftcam.CAMResult`.

    ``explain(augmented_batch)`` is called once per transform; the result is the un-augmented
    call's CAMResult (raw maps, logits, classes, scores) with the averaged heatmaps.
    """
    results = []

    def compute(augmented):
        result = explain(augmented)
        results.append(result)
        return result.heatmaps

    heatmaps = aug_smooth(compute, batch)
    return dataclasses.replace(results[IDENTITY], heatmaps=heatmaps)
