"""Where a forward pass spends its time: swiftcam's resnet50 forward pass stage by stage.

Times the whole pass and the pass from each stage's input onwards (the engine's forward_from:
the stem's max pool output, layer1's, layer2's, layer3's), so that differences give each stage's
time; medians of --repeats runs with a short rest before each. Reports each stage's GFLOP/s
from its multiply-accumulate count.

    python benchmarks/stages.py [--repeats 25] [--threads 2]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import swiftcam  # noqa: E402
from gemm_bound import resnet50_convolutions  # noqa: E402
from random_resnet import random_state_dict  # noqa: E402

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4 + head")
CONVOLUTIONS_PER_STAGE = (1, 10, 13, 19, 10)  # stem conv; 3 per block plus one downsample per stage
STAGE_INPUTS = ("maxpool", "layer1", "layer2", "layer3")  # the activation each later stage starts from


def stage_macs():
    """Multiply-accumulates of each stage of resnet50 at 224x224 (convolutions, and the fc layer)."""
    macs, first = [], 0
    convolutions = resnet50_convolutions(224)
    for count in CONVOLUTIONS_PER_STAGE:
        total = 0
        for cin, cout, kernel, stride, side in convolutions[first:first + count]:
            out = (side + 2 * (kernel // 2) - kernel) // stride + 1
            total += cin * kernel * kernel * cout * out * out
        macs.append(total)
        first += count
    macs[-1] += 2048 * 1000
    return macs


def median_ms(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        time.sleep(0.02)
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    swiftcam.set_num_threads(args.threads)
    model = swiftcam.load(random_state_dict("resnet50"))
    x = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    names = list(model.layer_names)
    activations = model.activations(x, layers=list(STAGE_INPUTS))
    logits = np.empty((1, model.num_classes), np.float32)
    remaining = [median_ms(lambda: model(x), args.repeats)]
    for name in STAGE_INPUTS:
        start = np.ascontiguousarray(activations[name])
        remaining.append(median_ms(
            lambda start=start, name=name: model._handle.forward_from(names.index(name), start, logits),
            args.repeats))
    remaining.append(0.0)
    print(f"resnet50 224x224 batch 1, {args.threads} threads, forward pass {remaining[0]:.1f} ms "
          f"(forward products on {swiftcam.gemm_kernel()})")
    for stage, macs, before, after in zip(STAGES, stage_macs(), remaining, remaining[1:]):
        ms = before - after
        print(f"  {stage:14s} {ms:6.1f} ms  {2 * macs / 1e9 / (ms / 1e3):6.0f} GFLOP/s")


if __name__ == "__main__":
    main()
