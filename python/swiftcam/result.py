"""CAMResult: everything one CAM computation produced, beyond the heatmaps."""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CAMResult"]


@dataclass(frozen=True)
class CAMResult:
    """The full result of :meth:`swiftcam.BaseCAM.explain`.

    Attributes
    ----------
    heatmaps : numpy.ndarray, float32, (N, H, W)
        The CAMs as ``cam(...)`` returns them: in [0, 1], at the input's size.
    raw_maps : dict of str to numpy.ndarray, float32, (N, h_i, w_i)
        Each target layer's map before ReLU, normalisation and resizing.
    logits : numpy.ndarray, float32, (N, num_classes)
    classes : numpy.ndarray, int64, (N,)
        The class each image's target explains; -1 for a target without a single class
        (e.g. :class:`~swiftcam.ClassifierOutputLinearTarget`).
    scores : numpy.ndarray, float64, (N,)
        Each target's score ``target(logits[n])``.
    method : str
        The CAM class name, e.g. ``"GradCAM"``.
    target_layers : tuple of str
    """

    heatmaps: np.ndarray
    raw_maps: dict = field(repr=False)
    logits: np.ndarray = field(repr=False)
    classes: np.ndarray
    scores: np.ndarray
    method: str
    target_layers: tuple

    def __repr__(self):
        return (f"CAMResult(method={self.method!r}, target_layers={self.target_layers!r}, "
                f"heatmaps={self.heatmaps.shape}, classes={self.classes.tolist()}, "
                f"scores={np.round(self.scores, 4).tolist()})")
