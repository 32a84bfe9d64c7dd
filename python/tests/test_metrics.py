"""swiftcam.metrics against pytorch_grad_cam.metrics 1.5.7 and RISE's deletion/insertion.

Fixture keys (see Tests/Fixtures/README.md), all on the reference's ``cam/GradCAM_layer4``
(and ``cam/GradCAM_layer4_lowestclass``, whose maps are partly all zero) with
``ClassifierOutputSoftmaxTarget`` of the case's gradient targets:

- ``metric/<name>/<cam>``: the reference's metric values, ROAD with its imputer's noise set to 0;
- ``road_mask/<rule>/GradCAM_layer4`` and ``road_imputed/<rule>/GradCAM_layer4``: the binary
  mask handed to NoisyLinearImputer and the imputed image (noise 0);
- ``metric/{Deletion,Insertion}/GradCAM_layer4`` and ``metric_curve/...``: RISE's
  ``CausalMetric.single_run`` (probabilities of the predicted class; zeros / 11x11 blur).

Tolerances: metric values are differences of probabilities (or their means), in [-1, 1]:
1e-5 absolute (measured: at most 1.2e-7; logits agree to 1e-6 relative). Imputed images:
1e-5 x max |input| (measured: 1.2e-7, one float32 rounding of the float64 solution). Masks and
IncreaseInConfidence: exact (except where the score change is within 1e-5 of 0).
"""

import numpy as np
import pytest

import swiftcam
from conftest import CASES, get_case, get_model
from swiftcam import metrics
from swiftcam.metrics import deletion_insertion, road
from swiftcam.metrics.perturbation_confidence import (RemoveLeastRelevantFirst,
                                                      RemoveMostRelevantFirst, otsu_threshold)

METRIC_TOLERANCE = 1e-5
NOISELESS = road.NoisyLinearImputer(noise=0)

METRICS = {
    "CamMultImageConfidenceChange": lambda: metrics.CamMultImageConfidenceChange(),
    "DropInConfidence": lambda: metrics.DropInConfidence(),
    "IncreaseInConfidence": lambda: metrics.IncreaseInConfidence(),
    "ROADMostRelevantFirst_80": lambda: road.ROADMostRelevantFirst(80, imputer=NOISELESS),
    "ROADLeastRelevantFirst_20": lambda: road.ROADLeastRelevantFirst(20, imputer=NOISELESS),
    "ROADMostRelevantFirst_auto": lambda: road.ROADMostRelevantFirst("auto", NOISELESS),
    "ROADLeastRelevantFirst_auto": lambda: road.ROADLeastRelevantFirst("auto", NOISELESS),
    "ROADMostRelevantFirstAverage":
        lambda: road.ROADMostRelevantFirstAverage(imputer=NOISELESS),
    "ROADLeastRelevantFirstAverage":
        lambda: road.ROADLeastRelevantFirstAverage(imputer=NOISELESS),
    "ROADCombined": lambda: road.ROADCombined(imputer=NOISELESS),
}
ROAD_RULES = {"MoRF_80": (RemoveMostRelevantFirst, 80), "MoRF_10": (RemoveMostRelevantFirst, 10),
              "LeRF_auto": (RemoveLeastRelevantFirst, "auto")}


def _softmax_targets(case):
    classes = case.meta["metrics"]["targets"]["classes"]
    return [swiftcam.ClassifierOutputSoftmaxTarget(c) for c in classes]


def _metric_cases():
    for name in CASES:
        for metric in METRICS:
            yield pytest.param(name, metric, id=f"{name}-{metric}")


@pytest.mark.parametrize("case_name, metric", list(_metric_cases()))
def test_metric_matches_reference(case_name, metric):
    case, model = get_case(case_name), get_model(case_name)
    for cam_key in case.meta["metrics"]["cams"]:
        cam_id = cam_key.split("/", 1)[1]
        cams = case.tensor(cam_key)
        value = METRICS[metric]()(case.input, cams, _softmax_targets(case), model)
        expected = case.tensor(f"metric/{metric}/{cam_id}")
        assert value.dtype == np.float32 and value.shape == expected.shape
        if metric == "IncreaseInConfidence":
            change = case.tensor(f"metric/CamMultImageConfidenceChange/{cam_id}")
            clear = np.abs(change) > METRIC_TOLERANCE
            np.testing.assert_array_equal(value[clear], expected[clear])
        else:
            assert np.abs(value - expected).max() <= METRIC_TOLERANCE, cam_id


def test_logit_targets(case, case_model):
    targets = [swiftcam.ClassifierOutputTarget(c) for c in case.meta["gradient_targets"]]
    value = metrics.CamMultImageConfidenceChange()(
        case.input, case.tensor("cam/GradCAM_layer4"), targets, case_model)
    expected = case.tensor("metric/CamMultImageConfidenceChange_logit/GradCAM_layer4")
    assert np.abs(value - expected).max() <= 1e-5 * case.meta["max_abs_logit"]


@pytest.mark.parametrize("rule", list(ROAD_RULES))
def test_road_masks_and_imputation_match_reference(case, rule):
    remover_class, percentile = ROAD_RULES[rule]
    cams = case.tensor("cam/GradCAM_layer4")
    masks = case.tensor(f"road_mask/{rule}/GradCAM_layer4")
    for n in range(len(cams)):
        mask = remover_class(percentile, NOISELESS).binary_mask(cams[n])
        np.testing.assert_array_equal(np.float32(mask), masks[n])
    key = f"road_imputed/{rule}/GradCAM_layer4"
    if key not in case.expected:
        return
    imputed = case.tensor(key)
    scale = np.abs(case.input).max()
    for n in range(len(cams)):
        ours = remover_class(percentile, NOISELESS)(case.input[n], cams[n])
        assert ours.dtype == np.float32
        assert np.abs(ours - imputed[n]).max() <= 1e-5 * scale


@pytest.mark.parametrize("name", ["Deletion", "Insertion"])
def test_deletion_insertion_match_rise(case, case_model, name):
    cams = case.tensor("cam/GradCAM_layer4")
    metric = getattr(metrics, name)()
    auc, curves = metric(case.input, cams, None, case_model, return_curves=True)
    expected_curves = case.tensor(f"metric_curve/{name}/GradCAM_layer4")
    assert curves.shape == expected_curves.shape
    assert np.abs(curves - expected_curves).max() <= METRIC_TOLERANCE
    assert np.abs(auc - case.tensor(f"metric/{name}/GradCAM_layer4")).max() <= METRIC_TOLERANCE
    assert deletion_insertion.default_step(*case.input.shape[2:]) == \
        case.meta["metrics"]["rise_step"]
    # Explicit targets: the probability of RISE's class gives the same curves.
    targets = [swiftcam.ClassifierOutputSoftmaxTarget(c)
               for c in case.meta["metrics"]["rise_classes"]]
    np.testing.assert_array_equal(metric(case.input, cams, targets, case_model), auc)


# -- the imputer without a reference ---------------------------------------------------------

def test_imputation_reproduces_linear_images():
    """Inside the image, the mean of the 8 neighbours of a linear function is its value."""
    rows, cols = np.mgrid[:20, :30]
    img = np.stack([0.5 + 0.1 * rows - 0.03 * cols, rows * 0.0 + 2.0,
                    -0.2 * rows + 0.07 * cols]).astype(np.float64)
    missing = np.zeros((20, 30), dtype=bool)
    missing[3:15, 4:25] = True
    missing[16, 10:12] = True
    solution = road.solve_imputation(img, missing)
    np.testing.assert_allclose(solution, img[:, missing].T, atol=1e-10)


def test_imputation_orientations_agree():
    rng = np.random.default_rng(5)
    img = rng.standard_normal((3, 9, 23))
    missing = rng.random((9, 23)) < 0.6
    wide = road.solve_imputation(img, missing)  # eliminated column by column
    tall = road.solve_imputation(img.transpose(0, 2, 1), missing.T)  # row by row
    order = np.full(missing.shape, -1)
    order[missing] = np.arange(missing.sum())
    np.testing.assert_allclose(wide, tall[np.argsort(order.T[missing.T])], atol=1e-12)
    # The weighted-mean equations hold.
    full = img.copy()
    full[:, missing] = wide.T
    weights = dict((tuple(o), w) for o, w in road.neighbors_weights)
    r, c = np.argwhere(missing)[7]
    total = value = 0.0
    for (dr, dc), w in weights.items():
        if 0 <= r + dr < 9 and 0 <= c + dc < 23:
            total += w
            value = value + w * full[:, r + dr, c + dc]
    np.testing.assert_allclose(full[:, r, c], value / total, atol=1e-12)


def test_imputer_edge_cases_and_noise():
    img = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    np.testing.assert_array_equal(NOISELESS(img, np.ones((4, 5))), img)
    np.testing.assert_array_equal(NOISELESS(img, np.zeros((4, 5))), np.zeros_like(img))

    class Fixed:
        def standard_normal(self, size):
            return np.full(size, 2.0)

    mask = np.ones((4, 5))
    mask[1:3, 1:4] = 0
    noisy = road.NoisyLinearImputer(noise=0.5, rng=Fixed())(img, mask)
    plain = NOISELESS(img, mask)
    np.testing.assert_allclose(noisy[:, mask == 0], plain[:, mask == 0] + 1.0, atol=1e-6)
    np.testing.assert_array_equal(noisy[:, mask == 1], img[:, mask == 1])
    seeded = road.NoisyLinearImputer(rng=3)(img, mask)
    np.testing.assert_array_equal(seeded, road.NoisyLinearImputer(rng=3)(img, mask))
    with pytest.raises(ValueError, match="symmetric"):
        road.NoisyLinearImputer(weighting=[((0, 1), 1.0)])
    with pytest.raises(ValueError, match="neighbours"):
        road.NoisyLinearImputer(weighting=[((0, 2), 1.0), ((0, -2), 1.0)])
    with pytest.raises(ValueError, match="expected img"):
        NOISELESS(img, np.ones((5, 4)))


def test_otsu_threshold_examples():
    levels = np.array([[10, 10, 10, 200], [200, 200, 12, 11]], dtype=np.uint8)
    threshold = otsu_threshold(levels)
    assert 12 <= threshold < 200
    assert otsu_threshold(np.full((3, 3), 7, dtype=np.uint8)) == 0  # one level: no split


def test_gaussian_kernel_and_blur():
    kernel = deletion_insertion.gaussian_kernel(11, 5)
    assert kernel.shape == (11, 11) and kernel.dtype == np.float32
    np.testing.assert_allclose(kernel, kernel.T)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1])
    assert kernel.argmax() == 60 and 0.9 < kernel.sum() <= 1.0 + 1e-6
    blurred = deletion_insertion.gaussian_blur(np.ones((1, 3, 20, 20), np.float32))
    assert blurred.shape == (1, 3, 20, 20)
    np.testing.assert_allclose(blurred[0, :, 10, 10], kernel.sum(), rtol=1e-5)
    assert blurred[0, 0, 0, 0] < blurred[0, 0, 10, 10]  # zero padding darkens the border


def test_auc():
    assert deletion_insertion.auc([1.0, 1.0, 1.0]) == 1.0
    assert deletion_insertion.auc([0.0, 1.0]) == 0.5
    np.testing.assert_allclose(deletion_insertion.auc([[1, 0, 0], [0, 0, 1]]), [0.25, 0.25])


def test_metric_api(basic, basic_model):
    cams = basic.tensor("cam/GradCAM_layer4")
    targets = _softmax_targets(basic)
    metric = metrics.CamMultImageConfidenceChange()
    value, perturbed = metric(basic.input, cams, targets, basic_model,
                              return_visualization=True)
    np.testing.assert_array_equal(perturbed, basic.input * cams[:, None])
    after = metric(basic.input, cams, targets, basic_model, return_diff=False)
    before = np.float32([t(row) for t, row in zip(targets, basic_model(basic.input))])
    np.testing.assert_allclose(after - before, value, atol=1e-7)
    # targets=None: each image's argmax logit.
    top = [swiftcam.ClassifierOutputTarget(int(c))
           for c in np.argmax(basic_model(basic.input), axis=1)]
    np.testing.assert_array_equal(metric(basic.input, cams, None, basic_model),
                                  metric(basic.input, cams, top, basic_model))
    # Any callable model works.
    np.testing.assert_array_equal(metric(basic.input, cams, targets, lambda x: basic_model(x)),
                                  value)
    drop, _ = metrics.DropInConfidence()(basic.input, cams, targets, basic_model,
                                         return_visualization=True)
    np.testing.assert_array_equal(drop, np.maximum(-value, 0))
    with pytest.raises(swiftcam.InvalidInputError, match="1 target"):
        metric(basic.input, cams, targets[:1], basic_model)
    with pytest.raises(swiftcam.InputShapeError, match="cams"):
        metric(basic.input, cams[:, :10], targets, basic_model)
    with pytest.raises(TypeError, match="model is required"):
        metrics.Deletion()(basic.input, cams, targets)
    from swiftcam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    assert DropInConfidence is metrics.DropInConfidence
    assert IncreaseInConfidence is metrics.IncreaseInConfidence


def test_deletion_step_and_substrate(basic, basic_model):
    cams = basic.tensor("cam/GradCAM_layer4")[:1]
    x = basic.input[:1]
    auc, curves = metrics.Deletion(step=500)(x, cams, None, basic_model, return_curves=True)
    assert curves.shape == (1, 8)  # ceil(3015 / 500) + 1
    # The first state is the image, the last the substrate (zeros). The metric runs the states as
    # one batch, whose products have other shapes than one image's (the classifier's sgemm vs
    # sgemv, small feature maps side by side), so they agree to float rounding (logits
    # measured up to 2.7e-7 apart here), not bit for bit: tolerance 1e-6 relative.
    top = int(np.argmax(basic_model(x)))
    probability = swiftcam.ClassifierOutputSoftmaxTarget(top)
    np.testing.assert_allclose(curves[0, 0], probability(basic_model(x)[0]), rtol=1e-6)
    np.testing.assert_allclose(curves[0, -1], probability(basic_model(np.zeros_like(x))[0]), rtol=1e-6)
    insertion = metrics.Insertion(step=500, substrate_fn=deletion_insertion.zeros_substrate)
    _, reversed_curves = insertion(x, cams, None, basic_model, return_curves=True)
    np.testing.assert_allclose(reversed_curves[0, 0], curves[0, -1], rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        deletion_insertion.CausalMetric("both")


# -- live ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_reference():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("pytorch_grad_cam")
    pytest.importorskip("scipy")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    model = swiftcam.load(reference.state_dict())
    x = torch.randn((2, 3, 48, 56), generator=torch.Generator().manual_seed(7))
    from pytorch_grad_cam import GradCAM
    with GradCAM(model=reference, target_layers=[reference.layer4]) as cam:
        cams = cam(input_tensor=x, targets=None)
    return torch, reference, model, x, cams


def test_live_road_with_the_same_noise(torch_reference):
    torch, reference, model, x, cams = torch_reference
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    class TorchNoise:
        """Draws what the reference's torch.randn_like(res.t()) draws."""

        def standard_normal(self, size):
            channels, count = size
            return torch.randn(count, channels).t().numpy()

    classes = np.argmax(model(x.numpy()), axis=1)
    torch.manual_seed(11)
    with torch.no_grad():
        expected = ROADCombined(percentiles=[20, 50, 80])(
            x, cams, [ClassifierOutputSoftmaxTarget(int(c)) for c in classes], reference)
    torch.manual_seed(11)
    ours = road.ROADCombined([20, 50, 80], imputer=road.NoisyLinearImputer(rng=TorchNoise()))(
        x.numpy(), cams, [swiftcam.ClassifierOutputSoftmaxTarget(int(c)) for c in classes],
        model)
    assert np.abs(ours - expected).max() <= METRIC_TOLERANCE


def test_live_imputer_224(torch_reference):
    torch = torch_reference[0]
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    rng = np.random.default_rng(2)
    img = rng.standard_normal((3, 224, 224)).astype(np.float32)
    rows, cols = np.mgrid[:224, :224]
    cam = np.exp(-((rows - 100) ** 2 + (cols - 130) ** 2) / 3000.0).astype(np.float32)
    for percentile in (10, 80):
        mask = np.float32(cam < np.percentile(cam, percentile))
        expected = NoisyLinearImputer(noise=0)(torch.from_numpy(img),
                                               torch.from_numpy(mask)).numpy()
        assert np.abs(NOISELESS(img, mask) - expected).max() <= 1e-5 * np.abs(img).max()


def test_live_otsu_and_gaussian_kernel(torch_reference):
    cv2 = pytest.importorskip("cv2")
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(1)
    for _ in range(200):
        levels = (rng.random(tuple(rng.integers(1, 40, 2))) ** rng.uniform(0.2, 5) * 255)
        levels = levels.astype(np.uint8)
        threshold, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert otsu_threshold(levels) == threshold
    for klen, sigma in ((11, 5), (7, 1.5), (5, 3)):
        delta = np.zeros((klen, klen))
        delta[klen // 2, klen // 2] = 1
        np.testing.assert_array_equal(deletion_insertion.gaussian_kernel(klen, sigma),
                                      gaussian_filter(delta, sigma).astype(np.float32))


def test_live_deletion_insertion_against_rise(torch_reference):
    torch, reference, model, x, cams = torch_reference
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "tools" / "generate_fixtures.py"
    spec = importlib.util.spec_from_file_location("generate_fixtures", path)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    probabilities = torch.nn.Sequential(reference, torch.nn.Softmax(dim=1)).eval()
    kern = generator.rise_gkern(11, 5)
    step = deletion_insertion.default_step(48, 56)
    for mode, metric, substrate in (
            ("del", metrics.Deletion(), torch.zeros_like),
            ("ins", metrics.Insertion(),
             lambda t: torch.nn.functional.conv2d(t, kern, padding=5))):
        _, curves = metric(x.numpy(), cams, None, model, return_curves=True)
        with torch.no_grad():
            for n in range(len(x)):
                expected = generator.rise_single_run(probabilities, x[n:n + 1].clone(), cams[n],
                                                     mode, step, substrate)
                assert np.abs(curves[n] - expected).max() <= METRIC_TOLERANCE
