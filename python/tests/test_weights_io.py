"""Model weights in and out: labels, update_weights (training loops), save, and the convert
command. Uses the shared fixtures and the committed torch.save test files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import swiftcam
from swiftcam import _safetensors

FIXTURES = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures"
PTH = Path(__file__).resolve().parent / "data" / "pth"
BASIC = FIXTURES / "basic" / "weights.safetensors"


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 3, 40, 36)).astype(np.float32)


def test_labels_default_to_none_and_can_be_given():
    assert swiftcam.load(BASIC).labels is None
    names = [f"class {i}" for i in range(10)]
    assert swiftcam.load(BASIC, labels=names).labels == tuple(names)
    with pytest.raises(swiftcam.InvalidInputError, match="expected 10 class names"):
        swiftcam.load(BASIC, labels=["a", "b"])
    with pytest.raises(swiftcam.InvalidInputError, match="sequence of 10 class names"):
        swiftcam.load(BASIC, labels="abc")


def test_imagenet_labels_for_1000_classes():
    state = _safetensors.read(BASIC)
    rng = np.random.default_rng(1)
    state["fc.weight"] = rng.standard_normal((1000, state["fc.weight"].shape[1])).astype(np.float32)
    state["fc.bias"] = np.zeros(1000, np.float32)
    labels = swiftcam.load(state).labels
    assert len(labels) == 1000 and labels[281] == "tabby"


def test_update_weights_changes_results_in_place(x):
    model = swiftcam.load(BASIC)
    before = model(x)
    state = _safetensors.read(BASIC)
    state["fc.bias"] = state["fc.bias"] + 1
    model.update_weights(state)
    np.testing.assert_allclose(model(x), before + 1, atol=1e-5)
    # From a file, and back.
    model.update_weights(BASIC)
    np.testing.assert_array_equal(model(x), before)


def test_update_weights_reaches_the_convolutions(x):
    """New convolution weights take effect, also in the copy packed for the GEMM kernel."""
    model = swiftcam.load(BASIC)
    state = _safetensors.read(BASIC)
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"] * 0.5
    model.update_weights(state)
    np.testing.assert_array_equal(model(x), swiftcam.load(state)(x))
    assert np.abs(model(x) - swiftcam.load(BASIC)(x)).max() > 1e-3


def test_update_weights_refuses_another_architecture(x):
    model = swiftcam.load(BASIC)
    before = model(x)
    with pytest.raises(swiftcam.WeightsError, match="another architecture"):
        model.update_weights(FIXTURES / "grouped" / "weights.safetensors")
    state = _safetensors.read(BASIC)
    del state["layer1.0.bn1.running_var"]
    with pytest.raises(swiftcam.WeightsError, match="missing tensor 'layer1.0.bn1.running_var'"):
        model.update_weights(state)
    np.testing.assert_array_equal(model(x), before)  # nothing lost


def test_update_weights_on_closed_model_raises():
    model = swiftcam.load(BASIC)
    model.close()
    with pytest.raises(swiftcam.ModelClosedError):
        model.update_weights(BASIC)


@pytest.mark.parametrize("source", [BASIC, PTH / "checkpoint.pth"])
def test_save_round_trips(tmp_path, x, source):
    model = swiftcam.load(source)
    out = tmp_path / "saved.safetensors"
    model.save(out)
    np.testing.assert_array_equal(swiftcam.load(out)(x), model(x))
    original = (_safetensors.read(source) if source.suffix == ".safetensors"
                else swiftcam.read_pth(source))
    saved = _safetensors.read(out)
    assert set(saved) == {k for k in original if not k.endswith("num_batches_tracked")}
    for name, value in saved.items():
        np.testing.assert_array_equal(value, original[name].astype(np.float32), err_msg=name)


def test_save_after_update_writes_the_new_weights(tmp_path, x):
    model = swiftcam.load(BASIC)
    state = _safetensors.read(BASIC)
    state["fc.bias"] = state["fc.bias"] - 2
    model.update_weights(state)
    model.save(tmp_path / "updated.safetensors")
    np.testing.assert_array_equal(swiftcam.load(tmp_path / "updated.safetensors")(x), model(x))


def test_convert_command(tmp_path, x):
    out = tmp_path / "converted.safetensors"
    done = subprocess.run([sys.executable, "-m", "swiftcam", "convert", str(PTH / "checkpoint.pth"),
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    np.testing.assert_array_equal(swiftcam.load(out)(x), swiftcam.load(PTH / "checkpoint.pth")(x))
    bad = subprocess.run([sys.executable, "-m", "swiftcam", "convert", str(tmp_path / "absent.pth"),
                          str(tmp_path / "never.safetensors")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1
    assert "absent.pth" in bad.stderr and not (tmp_path / "never.safetensors").exists()
