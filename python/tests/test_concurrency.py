"""Many Python threads on one model at once, and determinism (issue 8).

A model is immutable after loading and every call has its own buffers (README, *Threads*), so
any number of threads may call it at once and get exactly what sequential calls give. Here 8
threads run a mix of forward passes, activations, gradients and CAMs (every method, several
shapes and batch sizes, top_k) on the same models at once, each in its own order, and every
result must be bit-identical to the sequential one.

Determinism:
- The same input gives bit-identical outputs on every call.
- Across thread counts (swiftcam.set_num_threads 1, 2, 4): measured bit-identical on the
  development machine (2 cores, OpenBLAS 0.3.21, SkylakeX kernels, inputs up to
  4 x 3 x 224 x 224): swiftcam splits a matrix product over threads by blocks of output rows or
  columns, never along the summed dimension, so every element is summed in the same order. The test
  allows a stated tolerance of 1e-6 x max |value| (logits, gradients) and 1e-6 absolute
  (heatmaps in [0, 1]) so that a BLAS build that does split sums still passes, and reports
  whether the results were identical.

Everything is small (fixtures of a few hundred kB, inputs up to 64 x 72): the file runs in a
few seconds.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import swiftcam

from conftest import get_case

THREADS = 8
METHODS = ("GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM",
           "LayerCAM", "EigenCAM", "EigenGradCAM")


@pytest.fixture(scope="module")
def models():
    loaded = {name: swiftcam.load(get_case(name).weights_path)
              for name in ("basic", "bottleneck", "grouped")}
    yield loaded
    for model in loaded.values():
        model.close()


def _jobs(models):
    """(label, function) pairs; each function computes a tuple of arrays from scratch."""
    rng = np.random.default_rng(8)
    jobs = []
    shapes = [(1, 3, 32, 32), (2, 3, 45, 67), (3, 3, 64, 40), (1, 3, 17, 72)]
    for model_name, model in models.items():
        for s, shape in enumerate(shapes):
            x = rng.standard_normal(shape, dtype=np.float32)
            n = shape[0]
            jobs.append((f"{model_name} forward {shape}", lambda m=model, x=x: (m(x),)))
            method = METHODS[(s + len(jobs)) % len(METHODS)]
            layers = [("layer1", "layer2", "layer3")[s % 3], "layer4"] if s % 2 else ["layer4"]
            targets = [int(c) for c in rng.integers(0, model.num_classes, n)]
            smooth = s == 3

            def cam(m=model, x=x, method=method, layers=layers, targets=targets, smooth=smooth):
                result = getattr(swiftcam, method)(m, layers).explain(x, targets,
                                                                      eigen_smooth=smooth)
                return (result.heatmaps, result.logits, *result.raw_maps.values())

            jobs.append((f"{model_name} {method} {layers} {shape}", cam))
        x = rng.standard_normal((2, 3, 40, 48), dtype=np.float32)
        jobs.append((f"{model_name} top_k", lambda m=model, x=x: swiftcam.GradCAM(
            m, ["layer3", "layer4"]).top_k(x, k=min(3, m.num_classes))))
        jobs.append((f"{model_name} activations", lambda m=model, x=x: tuple(
            m.activations(x, ["conv1", "maxpool", "layer2", "avgpool"]).values())))
        jobs.append((f"{model_name} gradients", lambda m=model, x=x: tuple(
            m.gradients(x, None, ["layer1", "layer4"]).values())))
    return jobs


def _assert_identical(label, got, want):
    assert len(got) == len(want), label
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, label
        if not np.array_equal(a, b, equal_nan=True):
            difference = np.abs(a.astype(np.float64) - b).max()
            pytest.fail(f"{label}: differs from the sequential result by up to {difference:.3g}")


@pytest.mark.parametrize("blas_threads, rounds, stride", [(1, 2, 1), (2, 1, 2)])
def test_eight_threads_on_shared_models_match_sequential(models, blas_threads, rounds, stride):
    """With a one-thread BLAS pool: every job, twice per thread. With two BLAS threads (8
    Python threads then contend for OpenBLAS's pool, which is slow on a busy machine): every
    other job, once per thread."""
    jobs = _jobs(models)[::stride]
    before = swiftcam.get_num_threads()
    swiftcam.set_num_threads(blas_threads)
    try:
        expected = [function() for _, function in jobs]
        results, failures = _run_in_threads(jobs, rounds)
    finally:
        swiftcam.set_num_threads(before)
    assert not failures, failures
    for t in range(THREADS):
        for (label, _), got, want in zip(jobs, results[t], expected):
            _assert_identical(f"thread {t}: {label}", got, want)


def _run_in_threads(jobs, rounds):
    barrier = threading.Barrier(THREADS)
    failures = []
    results = [[None] * len(jobs) for _ in range(THREADS)]

    def worker(t):
        order = np.random.default_rng(t).permutation(len(jobs))
        try:
            barrier.wait()
            for _ in range(rounds):
                for j in order:
                    results[t][j] = jobs[j][1]()
        except BaseException as error:  # noqa: BLE001: reported below, with the thread
            failures.append((t, repr(error)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return results, failures


def test_threads_sharing_one_cam_object(models):
    """A CAM object holds no per-call state the engine uses: share it across threads too."""
    model = models["bottleneck"]
    cam = swiftcam.GradCAMPlusPlus(model, ["layer3", "layer4"])
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((1 + i % 3, 3, 40 + 4 * i, 36), dtype=np.float32)
              for i in range(THREADS)]
    expected = [cam(x) for x in inputs]
    got = [None] * THREADS
    barrier = threading.Barrier(THREADS)

    def worker(i):
        barrier.wait()
        for _ in range(3):
            got[i] = cam(inputs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(THREADS):
        np.testing.assert_array_equal(got[i], expected[i])


def test_loading_and_closing_from_threads_while_others_compute(models):
    """Loads, closes and calls interleaved across threads: no crash, no wrong result."""
    path = get_case("basic").weights_path
    shared = models["basic"]
    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32), dtype=np.float32)
    expected = shared(x)
    barrier = threading.Barrier(THREADS)
    failures = []

    def worker(t):
        try:
            barrier.wait()
            for _ in range(4):
                if t % 2:
                    with swiftcam.load(path) as own:
                        np.testing.assert_array_equal(own(x), expected)
                else:
                    np.testing.assert_array_equal(shared(x), expected)
                    np.testing.assert_array_equal(
                        swiftcam.EigenCAM(shared, "layer4")(x), swiftcam.EigenCAM(
                            shared, "layer4")(x))
        except BaseException as error:  # noqa: BLE001
            failures.append((t, repr(error)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


def test_same_input_same_bits_on_every_call(models):
    model = models["grouped"]
    x = np.random.default_rng(11).standard_normal((3, 3, 48, 56), dtype=np.float32)
    first = (model(x), swiftcam.EigenGradCAM(model, ["layer2", "layer4"])(x, [0, 1, 2]),
             swiftcam.LayerCAM(model, "layer3").top_k(x, k=2)[0])
    for _ in range(3):
        again = (model(x), swiftcam.EigenGradCAM(model, ["layer2", "layer4"])(x, [0, 1, 2]),
                 swiftcam.LayerCAM(model, "layer3").top_k(x, k=2)[0])
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)


def test_results_do_not_depend_on_the_blas_thread_count(models):
    model = models["bottleneck"]
    x = np.random.default_rng(12).standard_normal((4, 3, 96, 112), dtype=np.float32)
    before = swiftcam.get_num_threads()

    def compute():
        return {
            "logits": model(x),
            "gradients": model.gradients(x, None, ["layer2"])["layer2"],
            "GradCAM": swiftcam.GradCAM(model, ["layer3", "layer4"])(x),
            "EigenCAM": swiftcam.EigenCAM(model, ["layer4"])(x),
        }

    try:
        results = {}
        for n in (1, 2, 4):
            swiftcam.set_num_threads(n)
            results[n] = compute()
    finally:
        swiftcam.set_num_threads(before)
    identical = True
    for n in (2, 4):
        for key, want in results[1].items():
            got = results[n][key]
            if np.array_equal(got, want):
                continue
            identical = False
            difference = np.abs(got.astype(np.float64) - want).max()
            if key in ("GradCAM", "EigenCAM"):
                assert difference <= 1e-6, (key, n, difference)
            else:
                assert difference <= 1e-6 * np.abs(want).max(), (key, n, difference)
    if not identical:
        print("results differ across BLAS thread counts (within the stated tolerance)")


_SET_THREADS_RACE = """
import threading, numpy as np, swiftcam
model = swiftcam.load({path!r})
x = np.random.default_rng(13).standard_normal((2, 3, 64, 64), dtype=np.float32)
expected = model(x)
stop = threading.Event()
failures = []

def compute():
    try:
        while not stop.is_set():
            np.testing.assert_array_equal(model(x), expected)
    except BaseException as error:
        failures.append(repr(error))

threads = [threading.Thread(target=compute) for _ in range(3)]
for thread in threads:
    thread.start()
for i in range(40):
    swiftcam.set_num_threads(1 + i % 3)
stop.set()
for thread in threads:
    thread.join()
assert not failures, failures
print("ok")
"""


def test_set_num_threads_while_other_threads_compute():
    """Changing the thread count while products run neither crashes nor changes results
    (in a child interpreter: a crash there must fail this test, not end the run)."""
    _run_child(_SET_THREADS_RACE.format(path=str(get_case("basic").weights_path)))


_FORKED_CHILD = """
import multiprocessing, numpy as np, swiftcam
model = swiftcam.load({path!r})
swiftcam.set_num_threads(2)
x = np.random.default_rng(14).standard_normal((2, 3, 96, 96), dtype=np.float32)
expected = model(x)  # starts the worker pool in the parent

def child(queue):
    queue.put(bool(np.array_equal(model(x), expected)))

context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
process.join(60)
assert process.exitcode == 0, process.exitcode
assert queue.get(timeout=5)
print("ok")
"""


def test_forked_child_computes_with_its_own_workers():
    """A child forked after the worker pool started (multiprocessing's default on Linux) has
    none of the parent's threads; the pool starts afresh there instead of waiting forever."""
    _run_child(_FORKED_CHILD.format(path=str(get_case("bottleneck").weights_path)))


def _run_child(code):
    """Runs code in a child interpreter, which must print "ok" and exit cleanly."""
    done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code],
                          capture_output=True, text=True, timeout=120,
                          env=_child_environment())
    assert done.returncode == 0 and done.stdout.strip() == "ok", (
        f"return code {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}")


def _child_environment():
    environment = dict(os.environ)
    package_root = str(Path(swiftcam.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, environment.get("PYTHONPATH")) if p)
    return environment
