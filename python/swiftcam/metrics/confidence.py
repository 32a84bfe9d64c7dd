"""Average Drop and Increase in Confidence (Chattopadhyay et al. 2018, Grad-CAM++), as
``pytorch_grad_cam.metrics.cam_mult_image``'s DropInConfidence and IncreaseInConfidence.

Both are per image (average them over a data set yourself, as the paper does):

- ``DropInConfidence``: ``max(score(input) - score(input * cam), 0)``; the paper divides by
  ``score(input)`` and reports a percentage; the reference, and swiftcam, return the plain drop.
- ``IncreaseInConfidence``: 1.0 where ``score(input * cam) > score(input)``, else 0.0.
"""

import numpy as np

from .cam_mult_image import CamMultImageConfidenceChange

__all__ = ["DropInConfidence", "IncreaseInConfidence"]


class DropInConfidence(CamMultImageConfidenceChange):
    """float32 (N,): ``max(-(score(input * cam) - score(input)), 0)``."""

    def __call__(self, *args, **kwargs):
        scores = super().__call__(*args, **kwargs)
        if isinstance(scores, tuple):  # return_visualization=True
            return (np.maximum(-scores[0], 0),) + scores[1:]
        return np.maximum(-scores, 0)


class IncreaseInConfidence(CamMultImageConfidenceChange):
    """float32 (N,): 1 where the score increased, 0 elsewhere."""

    def __call__(self, *args, **kwargs):
        scores = super().__call__(*args, **kwargs)
        if isinstance(scores, tuple):
            return (np.float32(scores[0] > 0),) + scores[1:]
        return np.float32(scores > 0)
