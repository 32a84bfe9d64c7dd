"""The perturbation-metric machinery of ``pytorch_grad_cam.metrics.perturbation_confidence``.

A metric perturbs each image with its CAM, runs the model on the perturbed batch and reports
the change of each image's target score. Here everything is NumPy: ``model`` is a
:class:`swiftcam.Model` (one batched engine call per evaluation) or any callable mapping an
(N, C, H, W) float32 array to (N, num_classes) scores.

Differences from the reference: ``targets=None`` means each image's highest logit (the reference
requires a list), and a ``targets`` list whose length differs from the batch raises (the
reference's ``zip`` silently truncates).
"""

import numpy as np

from .._arrays import as_float32
from .._seeds import resolve_targets
from ..errors import InputShapeError, InvalidInputError
from ..model import Model

__all__ = ["PerturbationConfidenceMetric", "RemoveMostRelevantFirst",
           "RemoveLeastRelevantFirst", "AveragerAcrossThresholds", "otsu_threshold",
           "run_model", "as_batch", "as_cams", "target_scores"]


def as_batch(model, input_tensor, name="input_tensor"):
    """The input as float32 (N, C, H, W), C-contiguous."""
    if isinstance(model, Model):
        return model._input(input_tensor, name)
    batch = as_float32(input_tensor, name)
    if batch.ndim != 4:
        raise InputShapeError(f"{name}: expected (N, C, H, W), got shape {batch.shape}")
    return batch


def as_cams(cams, batch, name="cams"):
    """The CAMs as float32 (N, H, W) matching the batch."""
    cams = as_float32(cams, name)
    expected = (batch.shape[0],) + batch.shape[2:]
    if cams.shape != expected:
        raise InputShapeError(f"{name}: expected shape {expected} (one (H, W) map per image), "
                              f"got {cams.shape}")
    return cams


def run_model(model, batch):
    """(N, num_classes) float32 scores of a batch."""
    if not callable(model):
        raise TypeError(f"model: expected a swiftcam.Model or a callable, got "
                        f"{type(model).__name__}")
    if not isinstance(model, Model) and callable(getattr(model, "state_dict", None)):
        raise TypeError("model: a torch module cannot be evaluated here; convert it with "
                        "swiftcam.from_torch(model)")
    outputs = np.asarray(model(batch), dtype=np.float32)
    if outputs.ndim != 2 or outputs.shape[0] != batch.shape[0]:
        raise InvalidInputError(f"model returned shape {outputs.shape}, expected "
                                f"({batch.shape[0]}, num_classes)")
    return outputs


def target_scores(targets, outputs):
    """float32 (N,) ``target(output)`` per image, as the reference's list comprehension."""
    return np.float32([np.float32(target(output)) for target, output in zip(targets, outputs)])


class PerturbationConfidenceMetric:
    """Score change after perturbing each image with its CAM.

    Parameters
    ----------
    perturbation : callable
        ``perturbation(image (C, H, W) float32, cam (H, W) float32) -> (C, H, W)``.
    """

    def __init__(self, perturbation):
        self.perturbation = perturbation

    def __call__(self, input_tensor, cams, targets, model, return_visualization=False,
                 return_diff=True):
        """Evaluate the metric.

        Parameters
        ----------
        input_tensor : array_like, (N, C, H, W)
        cams : array_like, (N, H, W)
        targets : list of targets, or None
            One per image (``target(logits_row)`` gives the score); None: each image's argmax.
        model : swiftcam.Model or callable
        return_visualization : bool
            Also return the perturbed batch (N, C, H, W).
        return_diff : bool
            Return score after minus score before (True) or the score after.

        Returns
        -------
        numpy.ndarray, float32, (N,)  [, numpy.ndarray (N, C, H, W)]
        """
        batch = as_batch(model, input_tensor)
        cams = as_cams(cams, batch)
        outputs = None
        if return_diff or targets is None:
            outputs = run_model(model, batch)
        resolved = resolve_targets(targets, outputs if outputs is not None
                                   else np.empty((batch.shape[0], 0), dtype=np.float32))
        if return_diff:
            scores = target_scores(resolved, outputs)
        perturbed = np.ascontiguousarray(np.stack(
            [np.asarray(self.perturbation(batch[i], cams[i]), dtype=np.float32)
             for i in range(batch.shape[0])]), dtype=np.float32)
        after = target_scores(resolved, run_model(model, perturbed))
        result = after - scores if return_diff else after
        if return_visualization:
            return result, perturbed
        return result


class RemoveMostRelevantFirst:
    """Perturbation: impute the pixels whose CAM value is at or above the ``percentile``-th
    percentile (``"auto"``: above Otsu's threshold of ``uint8(255 * cam)``).

    As the reference: ``binary_mask = float32(cam < np.percentile(cam, percentile))`` (1 =
    keep, 0 = impute) compared in float32, then ``imputer(image, binary_mask)``.
    """

    def __init__(self, percentile, imputer):
        self.percentile = percentile
        self.imputer = imputer

    def binary_mask(self, mask):
        """The mask handed to the imputer (0 = pixel to impute)."""
        mask = np.asarray(mask, dtype=np.float32)
        if self.percentile != "auto":
            threshold = np.float32(np.percentile(mask, self.percentile))
            return np.float32(mask < threshold)
        levels = np.uint8(mask * np.float32(255))
        return np.where(levels > otsu_threshold(levels), np.uint8(255), np.uint8(0))

    def __call__(self, input_tensor, mask):
        return self.imputer(input_tensor, self.binary_mask(mask))


class RemoveLeastRelevantFirst(RemoveMostRelevantFirst):
    """Perturbation: impute the pixels whose CAM value is at or below the
    ``100 - percentile``-th percentile (the most relevant first rule on ``1 - cam``)."""

    def binary_mask(self, mask):
        return super().binary_mask(np.float32(1) - np.asarray(mask, dtype=np.float32))


class AveragerAcrossThresholds:
    """Mean of a metric over several percentiles.

    ``imputer(percentile)`` builds the metric for one percentile (e.g.
    ``ROADMostRelevantFirst``).
    """

    def __init__(self, imputer, percentiles=(10, 20, 30, 40, 50, 60, 70, 80, 90)):
        self.imputer = imputer
        self.percentiles = list(percentiles)

    def __call__(self, input_tensor, cams, targets, model):
        scores = []
        for percentile in self.percentiles:
            imputer = self.imputer(percentile)
            scores.append(imputer(input_tensor, cams, targets, model))
        return np.mean(np.float32(scores), axis=0)


def otsu_threshold(levels):
    """Otsu's threshold of a uint8 array, as OpenCV's ``THRESH_OTSU`` computes it (the pixels
    above it are the foreground)."""
    levels = np.asarray(levels, dtype=np.uint8)
    histogram = np.bincount(levels.reshape(-1), minlength=256).astype(np.float64)
    total = levels.size
    if total == 0:
        return 0
    scale = 1.0 / total
    mu = float(np.dot(np.arange(256, dtype=np.float64), histogram)) * scale
    mu1 = q1 = 0.0
    max_sigma = max_value = 0.0
    epsilon = float(np.finfo(np.float32).eps)
    for i in range(256):
        p_i = histogram[i] * scale
        mu1 *= q1
        q1 += p_i
        q2 = 1.0 - q1
        if min(q1, q2) < epsilon or max(q1, q2) > 1.0 - epsilon:
            continue
        mu1 = (mu1 + i * p_i) / q1
        mu2 = (mu - q1 * mu1) / q2
        sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
        if sigma > max_sigma:
            max_sigma = sigma
            max_value = i
    return max_value
