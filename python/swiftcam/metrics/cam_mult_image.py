"""CamMultImageConfidenceChange, as ``pytorch_grad_cam.metrics.cam_mult_image``: the change of
each image's target score when the (normalised) input is multiplied by its CAM.

``DropInConfidence`` and ``IncreaseInConfidence`` live in :mod:`swiftcam.metrics.confidence`
and are importable from here too, as in the reference's layout.
"""

import numpy as np

from .perturbation_confidence import PerturbationConfidenceMetric

__all__ = ["multiply_tensor_with_cam", "CamMultImageConfidenceChange"]


def multiply_tensor_with_cam(input_tensor, cam):
    """``input_tensor * cam``: (C, H, W) times (H, W), float32."""
    return np.asarray(input_tensor, dtype=np.float32) * np.asarray(cam, dtype=np.float32)


class CamMultImageConfidenceChange(PerturbationConfidenceMetric):
    """``score(input * cam) - score(input)`` per image, float32 (N,).

    Call it as the reference: ``metric(input_tensor, cams, targets, model)``; see
    :class:`~swiftcam.metrics.perturbation_confidence.PerturbationConfidenceMetric`.
    """

    def __init__(self):
        super().__init__(multiply_tensor_with_cam)


def __getattr__(name):
    # The reference defines these two here; swiftcam keeps them in confidence.py.
    if name in ("DropInConfidence", "IncreaseInConfidence"):
        from . import confidence
        return getattr(confidence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
