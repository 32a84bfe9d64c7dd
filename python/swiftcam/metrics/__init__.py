"""Metrics for CAMs, laid out as ``pytorch_grad_cam.metrics`` (plus deletion/insertion).

``from pytorch_grad_cam.metrics.road import ROADCombined`` becomes
``from swiftcam.metrics.road import ROADCombined`` (or ``from swiftcam.metrics import ...``).
Every metric is called as the reference's: ``metric(input_tensor, cams, targets, model)`` with
``model`` a :class:`swiftcam.Model` (or any callable returning (N, num_classes) scores), and
returns one value per image. Pure NumPy: no torch, scipy or OpenCV.

- :class:`CamMultImageConfidenceChange`, :class:`DropInConfidence`,
  :class:`IncreaseInConfidence`: multiply the input by the CAM.
- ROAD (:mod:`swiftcam.metrics.road`): remove the most / least relevant pixels with noisy
  linear imputation.
- :class:`Deletion`, :class:`Insertion` (:mod:`swiftcam.metrics.deletion_insertion`): RISE's
  area under the score curve.
"""

from .cam_mult_image import CamMultImageConfidenceChange, multiply_tensor_with_cam
from .confidence import DropInConfidence, IncreaseInConfidence
from .deletion_insertion import CausalMetric, Deletion, Insertion, auc
from .perturbation_confidence import (AveragerAcrossThresholds, PerturbationConfidenceMetric,
                                      RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
from .road import (NoisyLinearImputer, ROADCombined, ROADLeastRelevantFirst,
                   ROADLeastRelevantFirstAverage, ROADMostRelevantFirst,
                   ROADMostRelevantFirstAverage)

__all__ = [
    "PerturbationConfidenceMetric", "RemoveMostRelevantFirst", "RemoveLeastRelevantFirst",
    "AveragerAcrossThresholds", "multiply_tensor_with_cam", "CamMultImageConfidenceChange",
    "DropInConfidence", "IncreaseInConfidence", "NoisyLinearImputer", "ROADMostRelevantFirst",
    "ROADLeastRelevantFirst", "ROADMostRelevantFirstAverage", "ROADLeastRelevantFirstAverage",
    "ROADCombined", "CausalMetric", "Deletion", "Insertion", "auc",
]
