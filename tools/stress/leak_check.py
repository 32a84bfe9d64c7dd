#!/usr/bin/env python3
"""Memory-leak check of swiftcam through its public Python API (issue 8).

    python3 tools/stress/leak_check.py            # the full check (about a minute)
    python3 tools/stress/leak_check.py --quick    # 10x fewer iterations
    python3 tools/stress/leak_check.py --json out.json

Each phase warms up, reads the resident set size (VmRSS in /proc/self/status), repeats the work
many times, and reads it again; native memory (Swift buffers, models, traces, OpenBLAS) is what
RSS sees and tracemalloc does not. A phase fails when RSS grows by more than its allowance, or
when the number of Python objects tracked by the garbage collector grows (a reference leak in
the C extension).

Phases:
  calls      5,000 computing calls on one model (forward, activations, gradients, every CAM
             method, top_k, explain), RSS after 100 calls vs after 5,000;
  models     200 models loaded from the .safetensors file and closed, 200 loaded from a
             state dict and dropped without close() (freed by the garbage collector);
  errors     2,000 calls that fail (bad shapes, dtypes, targets, layers, damaged files,
             closed models): the error paths of the C extension and the engine release
             everything too;
  threads    the calls phase from 4 threads at once (1,000 calls each).

Exit status 0 when every phase is within its allowance. Results: tools/stress/README.md.
"""

import argparse
import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = REPO_ROOT / "Tests" / "Fixtures" / "basic" / "weights.safetensors"

import swiftcam  # noqa: E402
from swiftcam import _safetensors  # noqa: E402

METHODS = ("GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM",
           "LayerCAM", "EigenCAM", "EigenGradCAM")


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def settle():
    gc.collect()
    time.sleep(0.05)  # let OpenBLAS's threads go idle
    return rss_kib()


def python_objects():
    gc.collect()
    return len(gc.get_objects())


# -- the work -------------------------------------------------------------------------------------


def make_calls(model, seed=0):
    """A cycle of computing calls on ``model``; returns a function doing call number i."""
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal((n, 3, h, w), dtype=np.float32)
              for n, h, w in ((1, 32, 32), (2, 40, 24), (3, 17, 33))]
    cams = [getattr(swiftcam, name)(model, ["layer3", "layer4"] if i % 2 else "layer4")
            for i, name in enumerate(METHODS)]

    def call(i):
        x = inputs[i % len(inputs)]
        kind = i % 6
        if kind == 0:
            model(x)
        elif kind == 1:
            model.activations(x, ["conv1", "layer2", "avgpool"])
        elif kind == 2:
            model.gradients(x, None, ["layer1", "layer4"])
        elif kind == 3:
            cams[i % len(cams)](x, targets=[i % 10] * len(x), eigen_smooth=(i % 5 == 0))
        elif kind == 4:
            cams[i % len(cams)].top_k(x, k=3)
        else:
            cams[i % len(cams)].explain(x.astype(np.float64))  # with a conversion

    return call


def make_failures(model, directory):
    """A cycle of calls that raise; each must leave nothing behind."""
    good = np.zeros((1, 3, 16, 16), np.float32)
    raw = FIXTURE.read_bytes()
    files = {
        "truncated": raw[: len(raw) // 2],
        "header": raw[:100],
        "json": (11).to_bytes(8, "little") + b'{"a": nope}',
        "empty": b"",
    }
    paths = []
    for name, data in files.items():
        path = Path(directory) / f"{name}.safetensors"
        path.write_bytes(data)
        paths.append(path)
    state = dict(_safetensors.read(FIXTURE))
    broken_state = dict(state)
    del broken_state["layer2.0.bn2.running_var"]
    misshaped = dict(state)
    misshaped["fc.weight"] = np.zeros((3, 3), np.float32)
    closed = swiftcam.load(FIXTURE)
    closed.close()
    cam = swiftcam.GradCAM(model, "layer4")
    failures = [
        lambda: model(np.zeros((1, 4, 16, 16), np.float32)),
        lambda: model(np.zeros((3, 16, 16), np.float32)),
        lambda: model(np.zeros((1, 3, 8, 8), np.complex64)),
        lambda: model(np.zeros((0, 3, 8, 8), np.float32)),
        lambda: cam(good, targets=[99]),
        lambda: cam(good, targets=[1, 2]),
        lambda: cam.top_k(good, k=0),
        lambda: model.activations(good, ["nope"]),
        lambda: swiftcam.GradCAM(model, ["layer4", "layer4"]),
        lambda: model._handle.forward(np.zeros((1, 3, 0, 5), np.float32),
                                      np.empty((1, 10), np.float32)),
        lambda: model._handle.trace(np.zeros((1, 3, 8, 8), np.float32), [99]),
        lambda: closed(good),
        lambda: swiftcam.load(broken_state),
        lambda: swiftcam.load(misshaped),
        lambda: swiftcam.load({"x": np.zeros(3, np.float32)}),
    ] + [lambda p=p: swiftcam.load(p) for p in paths]

    def fail(i):
        try:
            failures[i % len(failures)]()
        except (swiftcam.SwiftCAMError, TypeError):
            return
        raise AssertionError(f"failure case {i % len(failures)} did not raise")

    return fail


# -- phases ---------------------------------------------------------------------------------------


def measure(name, work, warmup, total, allowance_kib, object_allowance=200):
    for i in range(warmup):
        work(i)
    before = settle()
    objects_before = python_objects()
    started = time.perf_counter()
    for i in range(warmup, total):
        work(i)
    seconds = time.perf_counter() - started
    after = settle()
    objects_after = python_objects()
    growth = after - before
    result = {
        "phase": name,
        "iterations": total,
        "rss_after_warmup_kib": before,
        "rss_after_all_kib": after,
        "rss_growth_kib": growth,
        "allowance_kib": allowance_kib,
        "python_objects_growth": objects_after - objects_before,
        "seconds": round(seconds, 1),
        "ok": growth <= allowance_kib and objects_after - objects_before <= object_allowance,
    }
    print(f"{name:8s} RSS {before / 1024:7.1f} MiB after {warmup} -> {after / 1024:7.1f} MiB "
          f"after {total}: {growth:+6d} KiB (allowance {allowance_kib} KiB), Python objects "
          f"{objects_after - objects_before:+d}, {seconds:.1f} s  "
          f"{'ok' if result['ok'] else 'LEAK'}",
          flush=True)
    return result


def phase_calls(scale):
    model = swiftcam.load(FIXTURE)
    call = make_calls(model)
    result = measure("calls", call, 100, int(5000 * scale), 4096)
    model.close()
    return result


def phase_models(scale):
    state = dict(_safetensors.read(FIXTURE))
    x = np.zeros((1, 3, 16, 16), np.float32)

    def cycle(i):
        if i % 2:
            model = swiftcam.load(FIXTURE)
            model(x)
            model.close()
        else:
            model = swiftcam.load(state)
            swiftcam.GradCAM(model, "layer4")(x)
            del model  # no close(): the garbage collector frees it

    return measure("models", cycle, 20, 20 + int(400 * scale), 4096)


def phase_errors(scale, directory):
    model = swiftcam.load(FIXTURE)
    fail = make_failures(model, directory)
    result = measure("errors", fail, 100, int(2000 * scale), 2048)
    model.close()
    return result


def phase_threads(scale):
    model = swiftcam.load(FIXTURE)
    calls = [make_calls(model, seed=t) for t in range(4)]
    per_thread = max(10, int(1000 * scale))

    def run(count, offset):
        def body(t):
            for i in range(offset, offset + count):
                calls[t](i)
        threads = [threading.Thread(target=body, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run(50, 0)
    before = settle()
    objects_before = python_objects()
    started = time.perf_counter()
    run(per_thread, 50)
    seconds = time.perf_counter() - started
    after = settle()
    growth = after - before
    objects = python_objects() - objects_before
    ok = growth <= 4096 and objects <= 200
    print(f"threads  RSS {before / 1024:7.1f} MiB after 4x50 -> {after / 1024:7.1f} MiB after "
          f"4x{50 + per_thread}: {growth:+6d} KiB (allowance 4096 KiB), Python objects "
          f"{objects:+d}, {seconds:.1f} s  {'ok' if ok else 'LEAK'}", flush=True)
    model.close()
    return {"phase": "threads", "iterations": 4 * (50 + per_thread),
            "rss_after_warmup_kib": before, "rss_after_all_kib": after, "rss_growth_kib": growth,
            "allowance_kib": 4096, "python_objects_growth": objects,
            "seconds": round(seconds, 1), "ok": ok}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer iterations")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--phases", default="calls,models,errors,threads")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    print(f"swiftcam {swiftcam.__version__}, Python {sys.version.split()[0]}, NumPy "
          f"{np.__version__}, BLAS threads {swiftcam.get_num_threads()}, start RSS "
          f"{rss_kib() / 1024:.1f} MiB", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for phase in args.phases.split(","):
            if phase == "calls":
                results.append(phase_calls(scale))
            elif phase == "models":
                results.append(phase_models(scale))
            elif phase == "errors":
                results.append(phase_errors(scale, directory))
            elif phase == "threads":
                results.append(phase_threads(scale))
            else:
                parser.error(f"unknown phase {phase}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r["ok"] for r in results)
    print("no leak found" if ok else "LEAK: see the phases marked LEAK above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
