"""aug_smooth=True (test-time augmentation) against pytorch-grad-cam 1.5.7 + ttach.

Fixture keys ``augsmooth/<id>``: the reference's ``cam(..., aug_smooth=True)``. Tolerance as for
the CAMs: max(1e-5, 3 x the reference's own float32-vs-float64 difference), absolute (5e-5 for
AblationCAM, see test_perturbation_cams); the average of six maps is no noisier than one map.

Both paths are tested: ``cam(..., aug_smooth=True)`` / ``explain`` (BaseCAM and the perturbation
CAMs call :func:`swiftcam.augmentation.smooth_explanation`) and
:func:`swiftcam.augmentation.aug_smooth` around any CAM callable.
"""

import numpy as np
import pytest

import swiftcam
from conftest import entry_targets, get_case, get_model, meta_entries
from swiftcam import augmentation
from swiftcam.perturbation_cams import AblationCAM, ScoreCAM

PERTURBATION = {"ScoreCAM": ScoreCAM, "AblationCAM": AblationCAM}
_targets = entry_targets


def _entries():
    return meta_entries("extra_cams", "augsmooth/")


def _cam(model, entry):
    cls = PERTURBATION.get(entry["method"]) or getattr(swiftcam, entry["method"])
    return cls(model, entry["target_layers"], **entry["options"])


def _check(heatmaps, case, entry):
    if entry is None:
        pytest.fail("meta.json has no extra_cams: regenerate the fixtures")
    expected = case.tensor(entry["key"])
    assert heatmaps.shape == expected.shape and heatmaps.dtype == np.float32
    floor = 5e-5 if entry["method"] == "AblationCAM" else 1e-5  # see test_perturbation_cams
    limit = max(floor, 3 * entry["float64_vs_float32"])
    error = np.abs(heatmaps - expected).max()
    assert error <= limit, f"max abs error {error:.3g} > {limit:.3g}"


@pytest.mark.parametrize("case_name, entry", list(_entries()))
def test_aug_smooth_function_matches_reference(case_name, entry):
    case, model = get_case(case_name), get_model(case_name)
    cam = _cam(model, entry)
    targets = _targets(entry)
    heatmaps = augmentation.aug_smooth(lambda batch: cam(batch, targets), case.input)
    _check(heatmaps, case, entry)


@pytest.mark.parametrize("case_name, entry", list(_entries()))
def test_aug_smooth_argument_matches_reference(case_name, entry):
    case, model = get_case(case_name), get_model(case_name)
    cam = _cam(model, entry)
    result = cam.explain(case.input, _targets(entry), aug_smooth=True)
    _check(result.heatmaps, case, entry)
    # Everything else comes from the un-augmented input.
    np.testing.assert_allclose(result.logits, case.tensor("logits"), rtol=0,
                               atol=1e-5 * case.meta["max_abs_logit"])
    if entry["targets"]["kind"] != "none":
        assert result.classes.tolist() == entry["targets"]["classes"]


def test_transforms_are_ttach_order():
    assert augmentation.TRANSFORMS == ((False, 0.9), (False, 1.0), (False, 1.1),
                                       (True, 0.9), (True, 1.0), (True, 1.1))
    assert augmentation.TRANSFORMS[augmentation.IDENTITY] == (False, 1.0)


def test_augment_and_deaugment():
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    assert augmentation.augment(batch, False, 1.0) is not None
    np.testing.assert_array_equal(augmentation.augment(batch, False, 1.0), batch)
    flipped = augmentation.augment(batch, True, 1.1)
    np.testing.assert_array_equal(flipped, batch[..., ::-1] * np.float32(1.1))
    assert flipped.flags.c_contiguous and flipped.dtype == np.float32
    maps = rng.random((2, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(augmentation.deaugment(augmentation.deaugment(maps, True),
                                                         True), maps)
    np.testing.assert_array_equal(augmentation.deaugment(maps, False), maps)


def test_aug_smooth_averages_in_ttach_order():
    seen = []

    def compute(batch):
        seen.append(batch.copy())
        return batch[:, 0]  # a "CAM" that is the first channel

    batch = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    result = augmentation.aug_smooth(compute, batch)
    assert len(seen) == 6
    np.testing.assert_array_equal(seen[4], batch[..., ::-1])
    expected = np.mean(np.float32([batch[:, 0] * np.float32(f) for f in
                                   (0.9, 1, 1.1, 0.9, 1, 1.1)]), axis=0)
    np.testing.assert_array_equal(result, expected)


def test_smooth_explanation_keeps_identity_result(basic, basic_model):
    cam = swiftcam.GradCAM(basic_model, ["layer4"])
    targets = [swiftcam.ClassifierOutputTarget(c) for c in basic.meta["gradient_targets"]]
    result = augmentation.smooth_explanation(lambda b: cam.explain(b, targets), basic.input)
    plain = cam.explain(basic.input, targets)
    np.testing.assert_array_equal(result.logits, plain.logits)
    assert result.raw_maps.keys() == plain.raw_maps.keys()
    smoothed = augmentation.aug_smooth(lambda b: cam(b, targets), basic.input)
    np.testing.assert_array_equal(result.heatmaps, smoothed)


def test_perturbation_cams_support_aug_smooth(basic, basic_model):
    targets = [swiftcam.ClassifierOutputTarget(c) for c in basic.meta["gradient_targets"]]
    cam = ScoreCAM(basic_model, ["layer4"])
    expected = augmentation.aug_smooth(lambda b: cam(b, targets), basic.input)
    np.testing.assert_array_equal(cam(basic.input, targets, aug_smooth=True), expected)


# -- live ----------------------------------------------------------------------------------------

# ScoreCAM is covered by the fixtures (live it takes minutes: 6 x 512 forward passes per image).
@pytest.mark.parametrize("method", ["GradCAM", "GradCAMPlusPlus", "AblationCAM"])
def test_live_against_pytorch_grad_cam(method):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    model = swiftcam.load(reference.state_dict())
    x = torch.randn((2, 3, 64, 72), generator=torch.Generator().manual_seed(4))
    classes = np.argsort(-model(x.numpy()), axis=1)[:, 1]
    with getattr(grad_cam, method)(model=reference, target_layers=[reference.layer4]) as cam:
        expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes],
                       aug_smooth=True)
    ours_cam = PERTURBATION.get(method) or getattr(swiftcam, method)
    ours_cam = ours_cam(model, ["layer4"])
    targets = [swiftcam.ClassifierOutputTarget(int(c)) for c in classes]
    ours = augmentation.aug_smooth(lambda b: ours_cam(b, targets), x.numpy())
    assert np.abs(ours - expected).max() <= (5e-5 if method == "AblationCAM" else 1e-5)
