"""Guided backpropagation and Guided Grad-CAM against pytorch-grad-cam 1.5.7.

Fixtures: ``guided/input`` (GuidedBackpropReLUModel per image, class gradient_targets[n], stored
as (N, 3, H, W)), ``guided_gradcam/GradCAM_layer4`` (the reference's recipe
``cv2.merge([cam] * 3) * gb``) and ``guided_gradcam_deprocessed/GradCAM_layer4``
(``deprocess_image`` of it, uint8 stored as float32).

Tolerances: guided gradients 1e-5 x max |reference| (as every gradient); Guided Grad-CAM
2e-5 x max |reference| (a product of a map within 1e-5 absolute and such a gradient).
"""

import numpy as np
import pytest

import swiftcam
from swiftcam.errors import InvalidInputError
from swiftcam.guided_backprop import (GuidedBackpropReLUModel, GuidedGradCAM, deprocess_image,
                                      guided_gradcam)


def relative_error(actual, expected):
    return np.abs(actual - expected).max() / np.abs(expected).max()


def test_guided_backprop_matches_reference_per_image(case, case_model):
    gb_model = GuidedBackpropReLUModel(case_model)
    expected = case.tensor("guided/input")
    for n, c in enumerate(case.meta["gradient_targets"]):
        gb = gb_model(case.input[n:n + 1], target_category=c)
        assert gb.dtype == np.float32
        assert gb.shape == case.input.shape[2:] + (3,)
        assert relative_error(gb, expected[n].transpose(1, 2, 0)) <= 1e-5


def test_batched_gradients_match_reference(case, case_model):
    gb_model = GuidedBackpropReLUModel(case_model)
    gb = gb_model.gradients(case.input, case.meta["gradient_targets"])
    expected = case.tensor("guided/input")
    assert gb.shape == expected.shape
    for n in range(len(gb)):
        assert relative_error(gb[n], expected[n]) <= 1e-5


def test_guided_gradcam_recipe_is_exact_on_reference_inputs(case):
    cam = case.tensor("cam/GradCAM_layer4")
    gb = case.tensor("guided/input").transpose(0, 2, 3, 1)
    expected = case.tensor("guided_gradcam/GradCAM_layer4")
    np.testing.assert_array_equal(guided_gradcam(cam, gb), expected)
    for n in range(len(cam)):
        np.testing.assert_array_equal(guided_gradcam(cam[n], gb[n]), expected[n])
        np.testing.assert_array_equal(
            deprocess_image(expected[n]),
            case.tensor("guided_gradcam_deprocessed/GradCAM_layer4")[n].astype(np.uint8))


def test_guided_gradcam_class_matches_reference(case, case_model):
    targets = [swiftcam.ClassifierOutputTarget(c) for c in case.meta["gradient_targets"]]
    ours = GuidedGradCAM(case_model, ["layer4"])(case.input, targets)
    expected = case.tensor("guided_gradcam/GradCAM_layer4")
    assert ours.shape == expected.shape and ours.dtype == np.float32
    for n in range(len(ours)):
        assert relative_error(ours[n], expected[n]) <= 2e-5
        # The uint8 view may differ by one level where a value sits on a rounding boundary.
        viewed = deprocess_image(ours[n]).astype(np.int16)
        reference = case.tensor("guided_gradcam_deprocessed/GradCAM_layer4")[n]
        difference = np.abs(viewed - reference.astype(np.int16))
        assert difference.max() <= 1
        assert (difference > 0).mean() <= 0.01


def test_target_category_none_is_argmax(basic, basic_model):
    x = basic.input[:1]
    gb_model = GuidedBackpropReLUModel(basic_model)
    top = int(np.argmax(basic_model(x)))
    np.testing.assert_array_equal(gb_model(x), gb_model(x, target_category=top))
    np.testing.assert_array_equal(
        gb_model(x, swiftcam.ClassifierOutputTarget(top)), gb_model(x, top))
    np.testing.assert_array_equal(gb_model.forward(x), basic_model(x))


def test_guided_gradcam_default_targets(basic, basic_model):
    helper = GuidedGradCAM(basic_model, ["layer4"])
    top = [int(c) for c in np.argmax(basic_model(basic.input), axis=1)]
    np.testing.assert_array_equal(helper(basic.input), helper(basic.input, top))
    assert "GradCAM" in repr(helper)


def test_errors(basic, basic_model):
    gb_model = GuidedBackpropReLUModel(basic_model, device="cpu")
    with pytest.raises(InvalidInputError, match="one image"):
        gb_model(basic.input)
    with pytest.raises(InvalidInputError, match="out of range"):
        gb_model(basic.input[:1], target_category=10)
    with pytest.raises(TypeError, match="int"):
        gb_model(basic.input[:1], target_category=1.5)
    with pytest.raises(InvalidInputError, match="CPU"):
        GuidedBackpropReLUModel(basic_model, device="cuda")
    with pytest.raises(TypeError, match="swiftcam.Model"):
        GuidedBackpropReLUModel(object())
    with pytest.raises(InvalidInputError, match="does not match"):
        guided_gradcam(np.zeros((4, 5)), np.zeros((4, 6, 3)))


def test_deprocess_image_is_the_utils_one():
    from swiftcam.utils import image
    assert deprocess_image is image.deprocess_image


# -- live ----------------------------------------------------------------------------------------

def test_live_against_pytorch_grad_cam():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GuidedBackpropReLUModel as Reference
    from pytorch_grad_cam.utils.image import deprocess_image as reference_deprocess
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    model = swiftcam.load(reference.state_dict())
    x = torch.randn((1, 3, 96, 112), generator=torch.Generator().manual_seed(3))
    category = int(np.argsort(-model(x.numpy())[0])[2])
    expected = Reference(reference, device="cpu")(x.clone(), target_category=category)
    ours = GuidedBackpropReLUModel(model)(x, target_category=category)
    assert relative_error(ours, expected) <= 1e-5
    np.testing.assert_array_equal(deprocess_image(expected), reference_deprocess(expected))
