"""Deletion and insertion (Petsiuk et al. 2018, RISE): the area under the score curve while
the most salient pixels are progressively deleted from, or inserted into, the image.

As RISE's ``CausalMetric`` (its ``evaluation.py``), generalised to any image size and batched:

- The pixels are ordered by decreasing saliency,
  ``np.flip(np.argsort(cam.reshape(-1)), -1)`` (NumPy's default sort, so ties are broken as
  in RISE's code).
- ``step`` pixels change per step (RISE: 224 for 224 x 224 images; the default here is
  ``ceil(H * W / 224)``, i.e. at most 224 steps for any size), ``n_steps = ceil(H * W / step)``.
- Deletion starts from the image and replaces pixels (all channels) by the substrate, zeros by
  default; insertion starts from the substrate, a Gaussian blur by default (RISE: 11 x 11
  kernel, sigma 5, zero padding, on the normalised input), and restores the image's pixels.
- The score is evaluated on the ``n_steps + 1`` states (before the first change up to after
  the last) and the AUC is ``(sum - first / 2 - last / 2) / n_steps`` (trapezoids on [0, 1]).

Scores: RISE uses the softmax probability of the class the model predicts for the image. Here
``targets=None`` does exactly that (``ClassifierOutputSoftmaxTarget`` of each image's argmax);
a list of targets (``target(logits_row)``, as for every swiftcam metric) chooses other scores,
e.g. ``ClassifierOutputTarget(c)`` for the raw logit.

A good explanation has a LOW deletion AUC (the score collapses once its top pixels are gone)
and a HIGH insertion AUC.
"""

import math

import numpy as np

from .._seeds import resolve_targets
from ..utils.model_targets import ClassifierOutputSoftmaxTarget
from .perturbation_confidence import as_batch, as_cams, run_model, target_scores

__all__ = ["CausalMetric", "Deletion", "Insertion", "DeletionMetric", "InsertionMetric", "auc",
           "gaussian_kernel", "gaussian_blur", "zeros_substrate", "default_step"]


def auc(scores):
    """RISE's normalised area under a curve sampled at equal steps (along the last axis)."""
    scores = np.asarray(scores, dtype=np.float64)
    count = scores.shape[-1]
    if count < 2:
        raise ValueError("auc: need at least two points")
    return (scores.sum(axis=-1) - scores[..., 0] / 2 - scores[..., -1] / 2) / (count - 1)


def default_step(height, width):
    """Pixels per step: ``ceil(H * W / 224)`` (224 for 224 x 224 images, as RISE)."""
    return max(1, math.ceil(height * width / 224))


def _reflect_index(index, size):
    """scipy.ndimage's 'reflect' boundary (d c b a | a b c d | d c b a), any distance."""
    period = 2 * size
    index = np.mod(index, period)
    return np.where(index >= size, period - 1 - index, index)


def gaussian_kernel(klen=11, nsig=5):
    """RISE's ``gkern``: a Dirac at the centre of a (klen, klen) grid smoothed by
    ``scipy.ndimage.gaussian_filter(sigma=nsig)`` (truncate 4, 'reflect' boundary), as float32.
    Computed without scipy (separable, float64)."""
    radius = int(4.0 * nsig + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (nsig * nsig) * offsets.astype(np.float64) ** 2)
    weights = weights / weights.sum()
    centre = klen // 2
    line = np.zeros(klen)
    for position in range(klen):
        sources = _reflect_index(position + offsets, klen)
        line[position] = weights[sources == centre].sum()
    return np.outer(line, line).astype(np.float32)


def gaussian_blur(batch, klen=11, nsig=5):
    """RISE's blur substrate: each channel convolved with :func:`gaussian_kernel`, zero padding
    ``klen // 2`` (torch ``conv2d``), float32. ``batch`` (N, C, H, W) or (C, H, W)."""
    batch = np.asarray(batch, dtype=np.float32)
    kernel = gaussian_kernel(klen, nsig)
    pad = klen // 2
    height, width = batch.shape[-2:]
    padded = np.zeros(batch.shape[:-2] + (height + 2 * pad, width + 2 * pad), dtype=np.float32)
    padded[..., pad:pad + height, pad:pad + width] = batch
    out_shape = (height + 2 * pad - klen + 1, width + 2 * pad - klen + 1)
    out = np.zeros(batch.shape[:-2] + out_shape, dtype=np.float32)
    for a in range(klen):
        for b in range(klen):
            out += kernel[a, b] * padded[..., a:a + out.shape[-2], b:b + out.shape[-1]]
    return out


def zeros_substrate(batch):
    """RISE's deletion substrate: zeros."""
    return np.zeros_like(np.asarray(batch, dtype=np.float32))


class CausalMetric:
    """Deletion (``mode="del"``) or insertion (``mode="ins"``) AUC, per image.

    Parameters
    ----------
    mode : "del" or "ins"
    step : int, optional
        Pixels changed per step; default :func:`default_step` of the image size.
    substrate_fn : callable, optional
        ``substrate_fn(batch (N, C, H, W)) -> (N, C, H, W)``, the values pixels are replaced by
        (deletion) or start from (insertion). Default: zeros for deletion,
        :func:`gaussian_blur` for insertion, as RISE.
    batch_size : int
        Perturbed images per model call.
    """

    def __init__(self, mode, step=None, substrate_fn=None, batch_size=32):
        if mode not in ("del", "ins"):
            raise ValueError(f"mode must be 'del' or 'ins', got {mode!r}")
        if step is not None and (isinstance(step, bool) or int(step) != step or step < 1):
            raise ValueError(f"step must be a positive int, got {step!r}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.mode = mode
        self.step = None if step is None else int(step)
        if substrate_fn is None:
            substrate_fn = zeros_substrate if mode == "del" else gaussian_blur
        self.substrate_fn = substrate_fn
        self.batch_size = int(batch_size)

    def __call__(self, input_tensor, cams, targets=None, model=None, return_curves=False):
        """AUC per image.

        Parameters
        ----------
        input_tensor : array_like, (N, C, H, W)
        cams : array_like, (N, H, W)
            Saliency maps at the input's size.
        targets : list of targets, optional
            One per image; None: the softmax probability of each image's predicted class.
        model : swiftcam.Model or callable returning (N, num_classes)
        return_curves : bool
            Also return the score curves (N, n_steps + 1).

        Returns
        -------
        numpy.ndarray, float64, (N,)  [, numpy.ndarray, float64, (N, n_steps + 1)]
        """
        if model is None:
            raise TypeError("model is required: metric(input_tensor, cams, targets, model)")
        batch = as_batch(model, input_tensor)
        cams = as_cams(cams, batch)
        n, channels, height, width = batch.shape
        pixels = height * width
        step = self.step if self.step is not None else default_step(height, width)
        n_steps = (pixels + step - 1) // step
        if targets is None:
            logits = run_model(model, batch)
            targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in np.argmax(logits, axis=1)]
        else:
            targets = resolve_targets(targets, np.empty((n, 0), dtype=np.float32))
        substrate = np.asarray(self.substrate_fn(batch), dtype=np.float32)
        if substrate.shape != batch.shape:
            raise ValueError(f"substrate_fn returned shape {substrate.shape}, expected "
                             f"{batch.shape}")
        if self.mode == "del":
            start, finish = batch, substrate
        else:
            start, finish = substrate, batch
        curves = np.empty((n, n_steps + 1))
        for image in range(n):
            order = np.flip(np.argsort(cams[image].reshape(-1, pixels), axis=1), axis=-1)[0]
            rank = np.empty(pixels, dtype=np.int64)
            rank[order] = np.arange(pixels)
            rank = rank.reshape(1, 1, height, width)
            for first in range(0, n_steps + 1, self.batch_size):
                steps = np.arange(first, min(first + self.batch_size, n_steps + 1))
                changed = rank < (step * steps)[:, None, None, None]
                states = np.ascontiguousarray(
                    np.where(changed, finish[image][None], start[image][None]),
                    dtype=np.float32)
                outputs = run_model(model, states)
                curves[image, steps] = target_scores([targets[image]] * len(steps), outputs)
        result = auc(curves)
        if return_curves:
            return result, curves
        return result


class Deletion(CausalMetric):
    """Deletion AUC (lower is better); see :class:`CausalMetric`."""

    def __init__(self, step=None, substrate_fn=None, batch_size=32):
        super().__init__("del", step, substrate_fn, batch_size)


class Insertion(CausalMetric):
    """Insertion AUC (higher is better); see :class:`CausalMetric`."""

    def __init__(self, step=None, substrate_fn=None, batch_size=32):
        super().__init__("ins", step, substrate_fn, batch_size)


DeletionMetric = Deletion
InsertionMetric = Insertion
