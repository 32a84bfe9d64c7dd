"""ScoreCAM and AblationCAM against pytorch-grad-cam 1.5.7 (fixtures, and live where torch is
installed), and their NumPy post-processing against the engine's.

Tolerances (absolute, maps in [0, 1]):

- ScoreCAM: max(1e-5, 3 x the reference's own float32-vs-float64 difference for that map,
  meta.json extra_cams[].float64_vs_float32). Measured: at most 4e-6.
- AblationCAM: max(5e-5, 3 x that difference). Its weights are (score - ablated score) / score:
  every weight inherits the rounding error e0 of the one un-ablated score, divided by the score
  (a common offset of all weights, multiplied by the channel sum of the activations in the
  map). That error is one random draw per image and implementation: the reference's own float32
  map moves by up to 1.4e-5 from its float64 map on the fixtures, swiftcam's by up to 3.6e-5
  (one image of bottleneck AblationCAM_layer3.0; elsewhere swiftcam is closer to the float64
  reference than the float32 reference is, because its ablated and baseline scores are computed
  through the same engine call layout).
"""

import numpy as np
import pytest

import swiftcam
from conftest import entry_targets, get_case, get_model, meta_entries
from swiftcam import _numpy_cam
from swiftcam.errors import InvalidInputError, UnknownLayerError
from swiftcam.perturbation_cams import (AblationCAM, ScoreCAM, _ablation_values,
                                        activations_to_be_ablated, assemble_ablation_scores)

PERTURBATION = {"ScoreCAM": ScoreCAM, "AblationCAM": AblationCAM}
ENGINE_METHODS = ("GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM",
                  "LayerCAM")


def tolerance(entry):
    floor = 5e-5 if entry["method"] == "AblationCAM" else 1e-5
    return max(floor, 3 * entry["float64_vs_float32"])


targets_of = entry_targets


def extra_entries(prefix):
    return meta_entries("extra_cams", prefix)


def assert_matches(heatmaps, case, entry):
    if entry is None:
        pytest.fail("meta.json has no extra_cams: regenerate the fixtures")
    expected = case.tensor(entry["key"])
    assert heatmaps.dtype == np.float32
    assert heatmaps.shape == expected.shape
    candidates = [expected] + [case.tensor(k) for k in entry.get("sign_variants", {}).values()]
    limit = tolerance(entry)
    for image in range(heatmaps.shape[0]):
        error = min(np.abs(heatmaps[image] - c[image]).max() for c in candidates)
        assert error <= limit, f"image {image}: max abs error {error:.3g} > {limit:.3g}"
    for image in entry["all_zero_images"]:
        assert not np.any(heatmaps[image])


@pytest.mark.parametrize("case_name, entry", list(extra_entries("perturbation/")))
def test_perturbation_cam_matches_reference(case_name, entry):
    case = get_case(case_name)
    model = get_model(case_name)
    cls = PERTURBATION[entry["method"]]
    with cls(model, entry["target_layers"], **entry["options"]) as cam:
        heatmaps = cam(input_tensor=case.input, targets=targets_of(entry),
                       eigen_smooth=entry["eigen_smooth"])
    assert_matches(heatmaps, case, entry)
    np.testing.assert_allclose(cam.outputs, case.tensor("logits"), rtol=0,
                               atol=1e-5 * case.meta["max_abs_logit"])


# -- the NumPy pipeline equals the engine's -----------------------------------------------------

@pytest.mark.parametrize("layers", [["layer4"], ["layer3"], ["layer2.0"], ["layer3", "layer4"],
                                    ["layer1", "layer2", "layer4"]])
@pytest.mark.parametrize("method", ENGINE_METHODS)
def test_postprocess_equals_engine(case, case_model, method, layers):
    if case.name == "wide" and "layer2.0" in layers:
        layers = ["layer2"]
    targets = [swiftcam.ClassifierOutputTarget(c) for c in case.meta["gradient_targets"]]
    result = getattr(swiftcam, method)(case_model, layers).explain(case.input, targets)
    maps = [result.raw_maps[layer][:, None] for layer in result.target_layers]
    ours = _numpy_cam.postprocess(maps, case.input.shape[2:])[:, 0]
    # Measured: 0 to 2.4e-7 (the engine's float32 operations in another order).
    assert np.abs(ours - result.heatmaps).max() <= 1e-6


def test_weighted_sum_equals_engine_gradcam(basic, basic_model):
    layer = "layer3"
    targets = [swiftcam.ClassifierOutputTarget(c) for c in basic.meta["gradient_targets"]]
    gradients = basic_model.gradients(basic.input, targets, [layer])[layer]
    activations = basic_model.activations(basic.input, [layer])[layer]
    raw = swiftcam.GradCAM(basic_model, [layer]).explain(basic.input, targets).raw_maps[layer]
    for n in range(len(raw)):
        ours = _numpy_cam.weighted_sum(gradients[n].mean(axis=(1, 2))[None], activations[n])[0]
        assert np.abs(ours - raw[n]).max() <= 1e-5 * np.abs(raw[n]).max()


def test_projection_sign_rule_and_reference_values():
    rng = np.random.default_rng(3)
    tensor = rng.standard_normal((6, 4, 5)).astype(np.float32) + 2
    ours = _numpy_cam.projection(tensor)
    # The reference's get_2d_projection, up to sign.
    reshaped = tensor.reshape(6, -1).T
    centred = reshaped - reshaped.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=True)
    reference = (centred @ vt[0]).reshape(4, 5)
    assert min(np.abs(ours - reference).max(), np.abs(ours + reference).max()) <= 1e-5
    assert float((ours.astype(np.float64) * tensor.sum(axis=0)).sum()) >= 0
    assert np.array_equal(_numpy_cam.projection(-tensor), -ours) or \
        np.abs(_numpy_cam.projection(-tensor) + ours).max() <= 1e-5


def test_upsample_align_corners_corners_and_constant():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((3, 4, 5)).astype(np.float32)
    up = _numpy_cam.upsample_align_corners(maps, (13, 17))
    assert up.shape == (3, 13, 17) and up.dtype == np.float32
    # align_corners=True: the corner pixels are the input's corners.
    np.testing.assert_array_equal(up[:, 0, 0], maps[:, 0, 0])
    np.testing.assert_array_equal(up[:, -1, -1], maps[:, -1, -1])
    np.testing.assert_allclose(up[:, 0, -1], maps[:, 0, -1], atol=1e-6)
    constant = np.full((1, 3, 3), 2.5, dtype=np.float32)
    np.testing.assert_allclose(_numpy_cam.upsample_align_corners(constant, (9, 4)), 2.5,
                               rtol=1e-6)
    # A 1x1 map and a 1x1 output.
    np.testing.assert_array_equal(
        _numpy_cam.upsample_align_corners(maps[:, :1, :1], (3, 2)), np.broadcast_to(
            maps[:, :1, :1], (3, 3, 2)))
    np.testing.assert_array_equal(_numpy_cam.upsample_align_corners(maps, (1, 1))[:, 0, 0],
                                  maps[:, 0, 0])


# -- the reference's AblationLayer rules ------------------------------------------------------

def test_ablation_values_follow_the_reference():
    assert [float(v) for v in _ablation_values(np.float32(0), 3)] == [0.0, 0.0, 0.0]
    values = _ablation_values(np.float32(-2.3), 3)
    assert all(v.dtype == np.float32 for v in values)
    expected, current = [], np.float32(-2.3)
    for _ in range(3):
        current = np.float32(current - np.float32(1e7))
        expected.append(current)
    assert values == expected
    assert float(values[0]) == -10000002.0  # float32 rounding of -10000002.3


def test_assemble_ablation_scores_fills_skipped_channels():
    scores = assemble_ablation_scores([5.0, 7.0], np.float32(1.0), np.int32([3, 1]), 5)
    assert [float(s) for s in scores] == [1.0, 7.0, 1.0, 5.0, 1.0]


def test_channels_whose_ablation_changes_nothing_get_weight_zero(basic, basic_model):
    """Post-ReLU channels that are all zero: ablating them (to 0) changes nothing, and their
    weight is exactly 0 as in the reference (baseline and ablated scores come from the same
    engine call layout)."""
    layer = "layer4"
    activation = basic_model.activations(basic.input[:1], [layer])[layer][0]
    cam = AblationCAM(basic_model, [layer], batch_size=16)
    index = basic_model.layer_names.index(layer)
    perturbed = cam._perturbed_logits(basic.input, 0, index, activation)
    logits = basic_model(basic.input[:1])[0]
    weights = cam._weights(perturbed, logits, [swiftcam.ClassifierOutputTarget(1)], activation)
    dead = np.flatnonzero(activation.reshape(len(activation), -1).max(axis=1) == 0)
    assert len(dead) > 0
    assert np.all(weights[0, dead] == 0)


def test_activations_to_be_ablated(basic, basic_model):
    activation = basic_model.activations(basic.input, ["layer4"])["layer4"][0]
    channels = activation.shape[0]
    np.testing.assert_array_equal(activations_to_be_ablated(activation, 1.0), np.arange(channels))
    chosen = activations_to_be_ablated(activation, 0.25)
    assert chosen.dtype == np.int32 and len(chosen) == 2 * int(channels * 0.25)
    assert len(set(chosen.tolist())) == len(chosen)  # top and bottom quarters are disjoint


# -- API ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ScoreCAM, AblationCAM])
def test_api_like_the_other_cams(basic, basic_model, cls):
    cam = cls(basic_model, target_layers="layer4")
    assert isinstance(cam, swiftcam.BaseCAM)
    assert cam.target_layers == ("layer4",)
    targets = [swiftcam.ClassifierOutputTarget(c) for c in basic.meta["gradient_targets"]]
    result = cam.explain(basic.input, targets)
    assert isinstance(result, swiftcam.CAMResult)
    assert result.method == cls.__name__
    assert result.heatmaps.shape == (2, 67, 45)
    assert result.raw_maps["layer4"].shape == (2, 3, 2)
    assert result.classes.tolist() == basic.meta["gradient_targets"]
    np.testing.assert_allclose(result.scores, result.logits[[0, 1], result.classes], rtol=1e-6)
    np.testing.assert_array_equal(cam(basic.input, targets), result.heatmaps)
    assert 0.99 <= result.heatmaps.max() <= 1.0 and result.heatmaps.min() >= 0
    assert cls.__name__ in repr(cam)
    # targets=None: each image's argmax; plain ints are class targets.
    argmax = np.argmax(basic_model(basic.input), axis=1)
    np.testing.assert_array_equal(cam(basic.input), cam(basic.input, [int(c) for c in argmax]))


@pytest.mark.parametrize("cls", [ScoreCAM, AblationCAM])
def test_top_k_equals_single_class_maps(basic, basic_model, cls):
    cam = cls(basic_model, ["layer3", "layer4"])
    heatmaps, classes = cam.top_k(basic.input, k=3)
    assert heatmaps.shape == (2, 3, 67, 45) and classes.shape == (2, 3)
    logits = basic_model(basic.input)
    np.testing.assert_array_equal(classes, np.argsort(-logits, axis=1, kind="stable")[:, :3])
    # The masked / ablated copies run in batches of another size than for one class, and a batch's
    # products have other shapes (small feature maps side by side), so scores agree to float
    # rounding only; AblationCAM's weights (score - ablated score) / score amplify that
    # (measured 3.3e-6), ScoreCAM's softmax does not (measured < 1e-6).
    tolerance = 1e-5 if cls is AblationCAM else 1e-6
    for n in range(2):
        for j in range(3):
            single = cam(basic.input[n:n + 1], [int(classes[n, j])])[0]
            assert np.abs(single - heatmaps[n, j]).max() <= tolerance


class _RecordingHandle:
    """Wraps a model's engine handle and records the batch sizes of forward calls."""

    def __init__(self, handle):
        self._handle = handle
        self.batches = []

    def forward(self, batch, logits):
        self.batches.append(batch.shape[0])
        return self._handle.forward(batch, logits)

    def forward_from(self, layer, activation, logits):
        self.batches.append(activation.shape[0])
        return self._handle.forward_from(layer, activation, logits)

    def __getattr__(self, name):
        return getattr(self._handle, name)


@pytest.mark.parametrize("cls, batch_size", [(ScoreCAM, 7), (AblationCAM, 5)])
def test_batch_size_bounds_engine_calls_and_changes_nothing(basic, cls, batch_size):
    model = swiftcam.load(basic.weights_path)
    try:
        targets = [swiftcam.ClassifierOutputTarget(c) for c in basic.meta["gradient_targets"]]
        reference = cls(model, ["layer4"])(basic.input, targets)
        recorder = _RecordingHandle(model._handle)
        model._handle = recorder
        heatmaps = cls(model, ["layer4"], batch_size=batch_size)(basic.input, targets)
        assert max(recorder.batches) <= batch_size
        # All-zero channels are not run (ScoreCAM: one zero image instead; AblationCAM:
        # nothing); AblationCAM adds one un-ablated baseline per batch length (full, last).
        activations = model.activations(basic.input, ["layer4"])["layer4"]
        expected = 0
        for activation in activations:
            dead = int((activation.reshape(len(activation), -1).max(axis=1) == 0).sum())
            live = len(activation) - dead
            assert 0 < dead < len(activation)  # the case this test is about
            if cls is ScoreCAM:
                expected += live + 1
            else:
                expected += live + sum({min(batch_size, live), live % batch_size} - {0})
        assert sum(recorder.batches) == expected
        # Post-ReLU layer: the ablation value is 0 whatever the batch, so nothing changes.
        assert np.abs(heatmaps - reference).max() <= 1e-6
    finally:
        model._handle = recorder._handle if isinstance(model._handle, _RecordingHandle) \
            else model._handle
        model.close()


def test_score_cam_top_channels(basic, basic_model):
    targets = [swiftcam.ClassifierOutputTarget(c) for c in basic.meta["gradient_targets"]]
    full = ScoreCAM(basic_model, ["layer4"])(basic.input, targets)
    everything = ScoreCAM(basic_model, ["layer4"], top_channels=128)(basic.input, targets)
    np.testing.assert_array_equal(full, everything)
    few = ScoreCAM(basic_model, ["layer4"], top_channels=16)
    assert few._channels(np.zeros((128, 2, 2), np.float32)).tolist() == list(range(16))
    heatmaps = few(basic.input, targets)
    assert heatmaps.shape == full.shape and np.isfinite(heatmaps).all()
    assert heatmaps.max() <= 1.0
    # Scoring the channels that carry the most activation keeps the map close.
    assert np.corrcoef(heatmaps.ravel(), full.ravel())[0, 1] > 0.5


def test_validation(basic, basic_model):
    with pytest.raises(TypeError, match="positive int"):
        ScoreCAM(basic_model, ["layer4"], batch_size=0.5)
    with pytest.raises(InvalidInputError, match="positive int"):
        ScoreCAM(basic_model, ["layer4"], batch_size=0)
    with pytest.raises(InvalidInputError):
        ScoreCAM(basic_model, ["layer4"], top_channels=0)
    with pytest.raises(InvalidInputError, match="ratio"):
        AblationCAM(basic_model, ["layer4"], ratio_channels_to_ablate=1.5)
    with pytest.raises(NotImplementedError, match="ablation_layer"):
        AblationCAM(basic_model, ["layer4"], ablation_layer=object())
    with pytest.raises(NotImplementedError, match="reshape_transform"):
        ScoreCAM(basic_model, ["layer4"], reshape_transform=lambda x: x)
    with pytest.raises(UnknownLayerError, match="layer9"):
        AblationCAM(basic_model, ["layer9"])
    with pytest.raises(InvalidInputError, match="twice"):
        ScoreCAM(basic_model, ["layer4", "layer4"])
    with pytest.raises(TypeError, match="swiftcam.Model"):
        ScoreCAM(object(), ["layer4"])
    cam = ScoreCAM(basic_model, ["layer4"])
    with pytest.raises(InvalidInputError, match="1 target"):
        cam(basic.input, [swiftcam.ClassifierOutputTarget(1)])
    with pytest.raises(InvalidInputError, match="k must be"):
        cam.top_k(basic.input, k=0)


# -- live, against pytorch-grad-cam on a full-size network ------------------------------------

@pytest.fixture(scope="module")
def live():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    x = torch.randn((1, 3, 64, 80), generator=generator)
    return torch, grad_cam, reference, swiftcam.load(reference.state_dict()), x


@pytest.mark.parametrize("method, layers, kwargs", [
    ("ScoreCAM", ["layer4"], {}),
    ("AblationCAM", ["layer4"], {}),
    ("AblationCAM", ["layer3", "layer4"], {"batch_size": 64}),
    ("AblationCAM", ["conv1"], {"batch_size": 16}),
])
def test_live_against_pytorch_grad_cam(live, method, layers, kwargs):
    torch, grad_cam, reference, model, x = live
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    classes = np.argsort(-model(x.numpy()), axis=1)[:, 1]
    modules = dict(reference.named_modules())
    cls = getattr(grad_cam, method)
    with cls(model=reference, target_layers=[modules[n] for n in layers], **kwargs) as cam:
        expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c))
                                                for c in classes])
    ours = PERTURBATION[method](model, layers, **kwargs)(
        x, [swiftcam.ClassifierOutputTarget(int(c)) for c in classes])
    # Measured on this network: ScoreCAM 1e-6, AblationCAM up to 2e-5 (float32 noise of
    # score differences, as on the fixtures).
    limit = 1e-5 if method == "ScoreCAM" else 5e-5
    assert np.abs(ours - expected).max() <= limit
