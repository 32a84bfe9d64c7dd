"""Closing models, context managers, and calls from several threads at once."""

import threading

import numpy as np
import pytest

import swiftcam
from swiftcam.errors import ModelClosedError


def test_close_then_call_raises(fresh_model, basic):
    fresh_model.close()
    assert fresh_model.closed
    assert fresh_model._handle.freed
    with pytest.raises(ModelClosedError, match="closed"):
        fresh_model(basic.input)
    with pytest.raises(ModelClosedError):
        fresh_model.activations(basic.input)
    with pytest.raises(ValueError):  # like an operation on a closed file
        fresh_model._last_input_address()
    fresh_model.close()  # closing twice is fine


def test_description_survives_close(fresh_model):
    fresh_model.close()
    assert fresh_model.num_classes == 10
    assert fresh_model.layer_names[0] == "conv1"
    assert "closed" in repr(fresh_model)


def test_context_manager_closes(basic):
    with swiftcam.load(basic.weights_path) as model:
        assert not model.closed
        model(basic.input)
    assert model.closed


def test_cam_on_closed_model_raises(fresh_model, basic):
    cam = swiftcam.GradCAM(fresh_model, "layer4")
    fresh_model.close()
    with pytest.raises(ModelClosedError):
        cam(basic.input)


def test_live_trace_defers_free(fresh_model, basic):
    handle = fresh_model._handle
    trace = handle.trace(basic.input, [12])
    assert handle.in_use == 1
    fresh_model.close()
    assert fresh_model.closed and not handle.freed  # the trace still needs it
    logits = np.empty((2, 10), dtype=np.float32)
    trace.logits(logits)  # still works
    np.testing.assert_allclose(logits, basic.tensor("logits"), rtol=0, atol=1e-5)
    trace.close()
    assert handle.in_use == 0 and handle.freed
    with pytest.raises(ModelClosedError, match="trace is closed"):
        trace.logits(logits)


def test_trace_keeps_model_alive_after_last_reference(basic):
    model = swiftcam.load(basic.weights_path)
    trace = model._handle.trace(basic.input, [0])
    del model
    out = np.empty(basic.tensor("activation/conv1").shape, dtype=np.float32)
    trace.activation(0, out)
    np.testing.assert_allclose(out, basic.tensor("activation/conv1"), rtol=0, atol=1e-4)
    del trace  # frees the trace, then the model


def test_close_while_another_thread_computes(basic):
    """close() during a running forward pass must not free memory under it (deferred)."""
    model = swiftcam.load(basic.weights_path)
    x = np.random.default_rng(0).standard_normal((8, 3, 224, 224), dtype=np.float32)
    results, errors = [], []
    started = threading.Event()

    def worker():
        started.set()
        try:
            for _ in range(3):
                results.append(model(x))
        except ModelClosedError as error:
            errors.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    while model._handle.in_use == 0 and thread.is_alive():
        pass  # wait until the forward pass is running (GIL released)
    model.close()
    thread.join()
    assert model._handle.freed
    assert results, "the call that was running when close() came must complete"
    assert all(r.shape == (8, 10) and np.all(np.isfinite(r)) for r in results)


def test_concurrent_calls_agree(basic, basic_model):
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((2, 3, 48 + 8 * i, 40), dtype=np.float32) for i in range(4)]
    expected = [basic_model(x) for x in inputs]
    outputs = [None] * len(inputs)

    def worker(i):
        for _ in range(3):
            outputs[i] = basic_model(inputs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(outputs, expected):
        np.testing.assert_array_equal(got, want)


def test_gil_is_released_during_forward(basic_model):
    """Another Python thread keeps running while the engine computes."""
    x = np.zeros((8, 3, 224, 224), dtype=np.float32)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(1)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        before = len(ticks)
        basic_model(x)
        during = len(ticks) - before
    finally:
        done.set()
        thread.join()
    assert during > 100
