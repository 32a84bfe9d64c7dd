"""Perturbation CAMs: ScoreCAM and AblationCAM, gradient-free, with pytorch-grad-cam's names.

Both weigh the channels of a target layer by what happens to the target score when the
network sees a perturbed version of its input (ScoreCAM) or of the layer's output
(AblationCAM); the maps are then post-processed exactly like the engine's methods (ReLU,
per-map min-max, bilinear resize; over several layers ReLU, mean, second min-max).

    cam = swiftcam.ScoreCAM(model, target_layers=["layer4"])
    heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])   # (N, H, W) in [0, 1]

The forward passes run on the Swift engine in batches; nothing here needs torch.

Targets only need ``target(logits_row)`` (no ``gradient``): any callable on a NumPy row of
logits works. ``top_k`` explains k classes from the SAME perturbed forward passes (the expensive
part), so it costs barely more than one class.

Deliberate differences from pytorch-grad-cam 1.5.7
- ScoreCAM never materialises the N x C upsampled masks at once (the reference builds an
  (N, C, 3, H, W) tensor: 1.2 GB for resnet50 layer4 at 224x224); masks are made
  ``batch_size`` channels at a time.
- Channels that are zero everywhere (common after a ReLU) are not run one by one: for
  ScoreCAM they all mask the input to the same zero image (one pass); for AblationCAM with
  ablation value 0 ablating them changes nothing (weight 0, what the reference's passes give
  up to rounding).
- AblationCAM's weights use, as the un-ablated score in ``score - ablated score``, the
  un-ablated activation run through the same engine call layout as the ablated copies (the
  division is by the score of the model's forward pass, as the reference); see
  :meth:`AblationCAM._perturbed_logits`.
- ``ScoreCAM(top_channels=n)`` (not in the reference): score only the n channels with the
  largest spatial mean activation per image; the others get weight 0 (the softmax runs over the
  scored channels). About C/n times faster; an approximation.
- AblationCAM at ``bn1`` or inside a block sees the true module output; the reference ablates
  the tensor after torchvision's in-place ReLU has overwritten it (see README).
- ``eigen_smooth`` uses the engine's documented SVD sign rule.
- A ``targets`` list whose length differs from the batch raises.
"""

import operator

import numpy as np

from ._numpy_cam import postprocess, projection, upsample_align_corners, weighted_sum
from ._seeds import resolve_targets, target_class
from .cam import BaseCAM, _check_finite
from .errors import InvalidInputError
from .result import CAMResult
from .utils.model_targets import ClassifierOutputTarget

__all__ = ["ScoreCAM", "AblationCAM"]


def _positive_int(value, name):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}") from None
    if value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value}")
    return value


def _score(target, row):
    """A target's score on one logits row as float32, like the reference's ``.item()``."""
    return np.float32(target(row))


class _PerturbationCAM(BaseCAM):
    """Shared machinery: one trace for logits and activations, per-image channel weights from
    perturbed forward passes, NumPy post-processing. Subclasses implement
    ``_perturbed_logits`` and ``_weights``."""

    method_id = None
    uses_gradients = False

    def __init__(self, model, target_layers, reshape_transform=None, batch_size=16):
        # Not BaseCAM.__init__, which requires an engine method id; the same checks.
        self._bind(model, target_layers, reshape_transform)
        self.batch_size = _positive_int(batch_size, "batch_size")

    # -- the pytorch-grad-cam interface -------------------------------------------------------

    def __call__(self, input_tensor, targets=None, aug_smooth=False, eigen_smooth=False):
        """Compute the CAMs of a batch: float32 (N, H, W) in [0, 1].

        ``aug_smooth=True`` averages the maps of six test-time augmentations (horizontal flip
        x brightness 0.9/1.0/1.1), as the reference; it costs six times as much.
        """
        return self.explain(input_tensor, targets, aug_smooth=aug_smooth,
                            eigen_smooth=eigen_smooth).heatmaps

    def explain(self, input_tensor, targets=None, aug_smooth=False, eigen_smooth=False):
        """Like ``__call__``, returning a :class:`CAMResult` (raw per-layer maps, logits,
        classes, scores). With ``aug_smooth`` everything but the heatmaps comes from the
        un-augmented input."""
        batch = self.model._input(input_tensor, "input_tensor")
        if aug_smooth:
            from .augmentation import smooth_explanation
            return smooth_explanation(
                lambda augmented: self.explain(augmented, targets, eigen_smooth=eigen_smooth),
                batch)
        chosen = []

        def make_targets(logits):
            chosen.extend(resolve_targets(targets, logits))
            return [chosen]

        heatmaps, raw, logits = self._compute(batch, make_targets, eigen_smooth)
        classes = np.array([target_class(t) for t in chosen], dtype=np.int64)
        scores = np.array([float(t(logits[i])) for i, t in enumerate(chosen)], dtype=np.float64)
        return CAMResult(heatmaps=heatmaps[:, 0], raw_maps={k: v[:, 0] for k, v in raw.items()},
                         logits=logits, classes=classes, scores=scores,
                         method=type(self).__name__, target_layers=self.target_layers)

    def top_k(self, input_tensor, k=5, eigen_smooth=False):
        """CAMs of each image's ``k`` highest-scoring classes; the perturbed forward passes are
        shared by the k classes.

        Returns heatmaps (N, k, H, W) float32 and classes (N, k) int64, highest logit first.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        if not 1 <= k <= self.model.num_classes:
            raise InvalidInputError(f"k must be between 1 and {self.model.num_classes} (the "
                                    f"number of classes), got {k}")
        batch = self.model._input(input_tensor, "input_tensor")
        found = []

        def make_targets(logits):
            classes = np.argsort(-logits, axis=1, kind="stable")[:, :int(k)].astype(np.int64)
            found.append(classes)
            return [[ClassifierOutputTarget(int(c)) for c in classes[:, j]]
                    for j in range(int(k))]

        heatmaps, _, _ = self._compute(batch, make_targets, eigen_smooth)
        return heatmaps, found[0]

    def __repr__(self):
        return (f"{type(self).__name__}({self.model!r}, target_layers="
                f"{list(self.target_layers)}, batch_size={self.batch_size})")

    # -- computation --------------------------------------------------------------------------

    def _compute(self, batch, make_targets, eigen_smooth):
        """Heatmaps (N, K, H, W), raw maps {layer: (N, K, h, w)} and logits.

        ``make_targets(logits)`` returns K lists of N targets.
        """
        model = self.model
        n, _, height, width = batch.shape
        _check_finite(batch)
        trace = model._trace(batch, self._layer_ids, "input_tensor")
        try:
            logits = np.empty((n, model.num_classes), dtype=np.float32)
            trace.logits(logits)
            activations = []
            for position, index in enumerate(self._layer_ids):
                output = np.empty(model.layer_shape(index, batch.shape), dtype=np.float32)
                trace.activation(position, output)
                activations.append(output)
        finally:
            trace.close()
        target_sets = make_targets(logits)
        k = len(target_sets)
        raw = {}
        for index, acts in zip(self._layer_ids, activations):
            maps = np.empty((n, k) + acts.shape[2:], dtype=np.float32)
            for image in range(n):
                targets = [target_set[image] for target_set in target_sets]
                perturbed = self._perturbed_logits(batch, image, index, acts[image])
                weights = self._weights(perturbed, logits[image], targets, acts[image])
                if eigen_smooth:
                    for j in range(k):
                        maps[image, j] = projection(weights[j][:, None, None] * acts[image])
                else:
                    maps[image] = weighted_sum(weights, acts[image])
            raw[model.layer_names[index]] = maps
        heatmaps = postprocess(list(raw.values()), (height, width))
        self.outputs = logits
        return heatmaps, raw, logits


class ScoreCAM(_PerturbationCAM):
    """Score-CAM (Wang et al. 2020): each channel of the target layer, upsampled to the input
    size and min-max normalised, masks the input; the channel's weight is the softmax over
    channels of the target scores of the masked inputs.

    As pytorch-grad-cam: ``UpsamplingBilinear2d`` (align_corners=True), normalisation
    ``(m - min) / (max - min + 1e-8)``, softmax in float32; C forward passes per image and
    layer, run ``batch_size`` at a time.

    Parameters
    ----------
    model : swiftcam.Model
    target_layers : str or sequence of str
    reshape_transform : None
    batch_size : int
        Masked images per engine call (the reference uses 16). Memory is about
        ``batch_size x 3 x H x W`` floats plus the engine's workspace.
    top_channels : int, optional
        Not in the reference: score only this many channels per image and layer (those with
        the largest spatial mean activation, ties by channel index); the others get weight 0
        and the softmax runs over the scored ones. None (the default) scores all channels.
    """

    def __init__(self, model, target_layers, reshape_transform=None, batch_size=16,
                 top_channels=None):
        super().__init__(model, target_layers, reshape_transform, batch_size)
        self.top_channels = None if top_channels is None else _positive_int(top_channels,
                                                                            "top_channels")

    def _channels(self, activation):
        channels = activation.shape[0]
        if self.top_channels is None or self.top_channels >= channels:
            return np.arange(channels)
        means = activation.reshape(channels, -1).astype(np.float64).mean(axis=1)
        return np.sort(np.argsort(-means, kind="stable")[:self.top_channels])

    def _perturbed_logits(self, batch, image, layer, activation):
        """(channels, logits) for the masked inputs of one image.

        A channel that is zero everywhere masks the input to exactly zero: those channels share
        one forward pass of a zero image (post-ReLU layers of trained networks have many).
        """
        height, width = batch.shape[2:]
        channels = self._channels(activation)
        picture = batch[image]
        logits = np.empty((len(channels), self.model.num_classes), dtype=np.float32)
        dead = ~activation[channels].reshape(len(channels), -1).any(axis=1)
        if dead.any():
            zero = np.zeros((1,) + picture.shape, dtype=np.float32)
            out = np.empty((1, self.model.num_classes), dtype=np.float32)
            self.model._handle.forward(zero, out)
            logits[dead] = out[0]
        live = np.flatnonzero(~dead)
        for start in range(0, len(live), self.batch_size):
            rows = live[start:start + self.batch_size]
            chunk = channels[rows]
            masks = upsample_align_corners(activation[chunk], (height, width))
            flat = masks.reshape(len(chunk), -1)
            low = flat.min(axis=1)[:, None, None]
            high = flat.max(axis=1)[:, None, None]
            masks = (masks - low) / (high - low + np.float32(1e-8))
            masked = np.ascontiguousarray(picture[None] * masks[:, None], dtype=np.float32)
            out = np.empty((len(chunk), self.model.num_classes), dtype=np.float32)
            self.model._handle.forward(masked, out)
            logits[rows] = out
        return channels, logits

    def _weights(self, perturbed, logits_row, targets, activation):
        channels, logits = perturbed
        weights = np.zeros((len(targets), activation.shape[0]), dtype=np.float32)
        for j, target in enumerate(targets):
            scores = np.array([_score(target, row) for row in logits], dtype=np.float32)
            shifted = np.exp(scores - scores.max())
            weights[j, channels] = shifted / shifted.sum()
        return weights


class AblationCAM(_PerturbationCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): channel k's weight is the relative drop of the
    target score when channel k of the target layer's output is ablated,
    ``(score - ablated score) / score``. Only the network above the layer runs again
    (``forward_from``), ``batch_size`` ablated copies per engine call.

    The ablation value is the reference's (``AblationLayer``): 0 when the activation's minimum
    is 0 (post-ReLU layers); otherwise, within one batch of ablated copies, the i-th copy gets
    ``min - (i + 1) x 1e7`` (the reference recomputes the minimum of the batch after each copy
    is modified), in float32.

    Parameters
    ----------
    model : swiftcam.Model
    target_layers : str or sequence of str
    reshape_transform : None
    ablation_layer : None
        Accepted for signature compatibility; only the default ablation is supported.
    batch_size : int
        Ablated copies per engine call (reference default 32). For a given layer the ablation
        values depend on it when the layer's minimum is not 0, exactly as in the reference.
    ratio_channels_to_ablate : float
        1.0 ablates every channel. Below 1, the reference's experimental selection: channels
        are ranked by the share of their (normalised) activation inside a mask from the first
        principal component, and the top ``int(C x ratio)`` and the bottom ``int(C x ratio)``
        are ablated (both lists; with ratio > 0.5 they overlap, which the reference handles
        oddly and swiftcam reproduces); the others get weight 0.
    """

    def __init__(self, model, target_layers, reshape_transform=None, ablation_layer=None,
                 batch_size=32, ratio_channels_to_ablate=1.0):
        if ablation_layer is not None:
            raise NotImplementedError("ablation_layer: only the default ablation (the "
                                      "reference's AblationLayer) is supported; pass None")
        super().__init__(model, target_layers, reshape_transform, batch_size)
        ratio = float(ratio_channels_to_ablate)
        if not 0.0 <= ratio <= 1.0:
            raise InvalidInputError(f"ratio_channels_to_ablate must be in [0, 1], got {ratio}")
        self.ratio_channels_to_ablate = ratio

    def _perturbed_logits(self, batch, image, layer, activation):
        """(ablated channels in the reference's order, their logits, baseline logits).

        The baseline of each ablated copy is the un-ablated activation run through the same
        engine call layout (batch size and position), so that the score differences
        ``baseline - ablated`` do not pick up the tiny difference between the trace's forward
        pass and ``forward_from`` (a common offset of all weights otherwise, multiplied by
        the channel sum of the activations). The reference gets this cancellation for free.

        When the ablation value is 0 (post-ReLU layers), channels that are zero everywhere
        are not run: ablating them changes nothing, their score is the baseline (weight 0;
        the reference computes the same pass and gets 0 up to rounding).
        """
        channels = activations_to_be_ablated(activation, self.ratio_channels_to_ablate)
        classes = self.model.num_classes
        logits = np.empty((len(channels), classes), dtype=np.float32)
        baseline = np.empty((len(channels), classes), dtype=np.float32)
        baselines = {}
        minimum = np.float32(activation.min())
        if minimum == 0:
            dead = ~activation[channels].reshape(len(channels), -1).any(axis=1)
        else:  # ablation values depend on the position in the batch: keep the layout
            dead = np.zeros(len(channels), dtype=bool)
        live = np.flatnonzero(~dead)
        for start in range(0, len(live), self.batch_size):
            rows = live[start:start + self.batch_size]
            chunk = channels[rows]
            ablated = np.repeat(activation[None], len(chunk), axis=0)
            if len(chunk) not in baselines:
                baselines[len(chunk)] = np.empty((len(chunk), classes), dtype=np.float32)
                self.model._handle.forward_from(layer, ablated, baselines[len(chunk)])
            baseline[rows] = baselines[len(chunk)]
            for row, value in enumerate(_ablation_values(minimum, len(chunk))):
                ablated[row, chunk[row]] = value
            out = np.empty((len(chunk), classes), dtype=np.float32)
            self.model._handle.forward_from(layer, ablated, out)
            logits[rows] = out
        if dead.any():
            if not baselines:
                baselines[1] = np.empty((1, classes), dtype=np.float32)
                self.model._handle.forward_from(
                    layer, np.ascontiguousarray(activation[None]), baselines[1])
            reference_row = next(iter(baselines.values()))[0]
            baseline[dead] = reference_row
            logits[dead] = reference_row
        return channels, logits, baseline

    def _weights(self, perturbed, logits_row, targets, activation):
        channels, logits, baseline = perturbed
        weights = np.empty((len(targets), activation.shape[0]), dtype=np.float32)
        for j, target in enumerate(targets):
            original = _score(target, logits_row)
            new_scores = np.float32(assemble_ablation_scores(
                [_score(target, row) for row in logits], original, channels,
                activation.shape[0]))
            base_scores = np.float32(assemble_ablation_scores(
                [_score(target, row) for row in baseline], original, channels,
                activation.shape[0]))
            weights[j] = (base_scores - new_scores) / original
        return weights


def _ablation_values(minimum, count):
    """The values the reference's AblationLayer writes into copies 0..count-1 of a batch."""
    if minimum == 0:
        return [np.float32(0)] * count
    values, current = [], np.float32(minimum)
    for _ in range(count):
        current = np.float32(current - np.float32(1e7))
        values.append(current)
    return values


def _projection_float32(activation):
    """pytorch-grad-cam's get_2d_projection for one (C, h, w) tensor, in float32 (its sign is
    irrelevant where used: only its absolute value is)."""
    activation = np.array(activation, dtype=np.float32)
    activation[np.isnan(activation)] = 0
    reshaped = activation.reshape(activation.shape[0], -1).transpose()
    reshaped = reshaped - reshaped.mean(axis=0)
    _, _, vt = np.linalg.svd(reshaped, full_matrices=True)
    return np.float32(reshaped @ vt[0, :]).reshape(activation.shape[1:])


def activations_to_be_ablated(activation, ratio_channels_to_ablate=1.0):
    """The channels the reference's ``AblationLayer.activations_to_be_ablated`` picks, in its
    order (int32). ``activation`` is one image's (C, h, w)."""
    channels = activation.shape[0]
    if ratio_channels_to_ablate == 1.0:
        return np.int32(range(channels))
    projection_mask = np.abs(_projection_float32(activation))
    projection_mask = projection_mask - projection_mask.min()
    projection_mask = projection_mask / projection_mask.max()
    projection_mask = projection_mask > 0.01
    scores = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for channel in activation:
            normalized = np.abs(channel)
            normalized = normalized - normalized.min()
            normalized = normalized / np.max(normalized)
            scores.append((projection_mask * normalized).sum() / normalized.sum())
    scores = np.float32(scores)
    indices = list(np.argsort(scores))
    count = int(len(indices) * ratio_channels_to_ablate)
    return np.int32(indices[::-1][:count] + indices[:count])


def assemble_ablation_scores(new_scores, original_score, ablated_channels, number_of_channels):
    """The reference's ``AblationCAM.assemble_ablation_scores``: the ablated score of each
    channel, the original score for channels that were not ablated."""
    index = 0
    result = []
    sorted_indices = np.argsort(ablated_channels)
    ablated_channels = ablated_channels[sorted_indices]
    new_scores = np.float32(new_scores)[sorted_indices]
    for i in range(number_of_channels):
        if index < len(ablated_channels) and ablated_channels[index] == i:
            weight = new_scores[index]
            index = index + 1
        else:
            weight = original_score
        result.append(weight)
    return result
