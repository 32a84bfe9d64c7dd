"""Targets: scores like pytorch-grad-cam's, and analytic gradients d(score)/d(logits)."""

import numpy as np
import pytest

import swiftcam
from swiftcam.errors import InvalidInputError
from swiftcam.utils.model_targets import (ClassifierOutputLinearTarget,
                                          ClassifierOutputSoftmaxTarget,
                                          ClassifierOutputTarget)

ROW = np.array([0.3, -1.2, 2.0, 0.5, -0.1], dtype=np.float32)


def numerical_gradient(target, row, step=1e-4):
    row = row.astype(np.float64)
    gradient = np.empty_like(row)
    for c in range(row.size):
        up, down = row.copy(), row.copy()
        up[c] += step
        down[c] -= step
        gradient[c] = (float(target(up)) - float(target(down))) / (2 * step)
    return gradient


def test_importable_from_both_places():
    assert swiftcam.ClassifierOutputTarget is ClassifierOutputTarget
    assert swiftcam.utils.ClassifierOutputSoftmaxTarget is ClassifierOutputSoftmaxTarget


def test_classifier_output_target():
    target = ClassifierOutputTarget(2)
    assert target(ROW) == ROW[2]
    np.testing.assert_array_equal(target(np.stack([ROW, ROW])), [ROW[2], ROW[2]])
    np.testing.assert_array_equal(target.gradient(ROW), np.eye(5, dtype=np.float32)[2])
    assert target.gradient(ROW).dtype == np.float32
    assert repr(target) == "ClassifierOutputTarget(2)"


def test_softmax_target_gradient():
    target = ClassifierOutputSoftmaxTarget(3)
    p = np.exp(ROW - ROW.max()) / np.exp(ROW - ROW.max()).sum()
    assert float(target(ROW)) == pytest.approx(p[3], rel=1e-6)
    np.testing.assert_allclose(target.gradient(ROW), p[3] * (np.eye(5)[3] - p), atol=1e-7)
    np.testing.assert_allclose(target.gradient(ROW), numerical_gradient(target, ROW),
                               atol=1e-6)
    np.testing.assert_allclose(target(np.stack([ROW, ROW])), [p[3], p[3]], rtol=1e-6)


def test_linear_target_sparse_and_dense():
    sparse = ClassifierOutputLinearTarget({2: 1.0, 0: -1.0})
    assert float(sparse(ROW)) == pytest.approx(ROW[2] - ROW[0])
    np.testing.assert_array_equal(sparse.gradient(ROW), [-1, 0, 1, 0, 0])
    np.testing.assert_allclose(sparse.gradient(ROW), numerical_gradient(sparse, ROW),
                               atol=1e-6)
    dense = ClassifierOutputLinearTarget([0.5, 0, 0, 0, 2.0])
    assert float(dense(ROW)) == pytest.approx(0.5 * ROW[0] + 2 * ROW[4])
    np.testing.assert_array_equal(dense.gradient(ROW), [0.5, 0, 0, 0, 2.0])
    with pytest.raises(InvalidInputError, match="4 entries for a model with 5 classes"):
        ClassifierOutputLinearTarget([1, 0, 0, 0]).gradient(ROW)


@pytest.mark.parametrize("cls", [ClassifierOutputTarget, ClassifierOutputSoftmaxTarget])
def test_class_out_of_range(cls):
    with pytest.raises(InvalidInputError, match="class index 5 is out of range .* 5 classes"):
        cls(5).gradient(ROW)
    with pytest.raises(InvalidInputError, match="non-negative"):
        cls(-1)
    with pytest.raises(TypeError):
        cls(1.5)
    with pytest.raises(TypeError):
        cls(True)


def test_numpy_integer_category():
    assert ClassifierOutputTarget(np.int64(3)).category == 3
