"""How fast could a ResNet forward pass be on OpenBLAS? Times the matrix products alone.

Runs, with OpenBLAS on one thread, exactly the sgemm calls swiftcam's convolutions make for
resnet50 at 224x224 (the same shapes, bands of output rows and side-by-side images as
Sources/SwiftCAM/Kernels/Conv2dShape.swift decides them) and nothing else: no im2col, no
packing outside OpenBLAS, no bias or ReLU. Their sum is a floor for swiftcam's forward pass on one
thread; it is compared with a large square-ish product's rate, the figure "the machine's sgemm
rate" usually means.

    python benchmarks/gemm_bound.py [--batch 1] [--repeats 5]
"""

import argparse
import ctypes
import statistics
import time

import numpy as np

BAND_BUDGET = 1 << 18       # Conv2dShape.columnBandBudget
MINIMUM_BAND_COLUMNS = 256  # Conv2dShape.minimumBandColumns
PRODUCT_COLUMNS = 512       # Conv2dShape.productColumnsTarget


def resnet50_convolutions(size=224):
    """(in, out, kernel, stride, input size) of every convolution of torchvision's resnet50."""
    convs = [(3, 64, 7, 2, size)]
    side = (size + 1) // 2 // 2  # after conv1 (stride 2) and the max pool (stride 2)
    channels = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            s = stride if block == 0 else 1
            convs.append((channels, width, 1, 1, side))
            convs.append((width, width, 3, s, side))
            out_side = (side - 1) // s + 1
            convs.append((width, 4 * width, 1, 1, out_side))
            if block == 0:
                convs.append((channels, 4 * width, 1, s, side))
            channels, side = 4 * width, out_side
    return convs


def products(conv, batch):
    """The (m, n, k) sgemm calls swiftcam makes for one convolution over a batch."""
    cin, cout, kernel, stride, side = conv
    padding = kernel // 2
    out = (side + 2 * padding - kernel) // stride + 1
    rows, plane = cin * kernel * kernel, out * out
    pointwise = kernel == 1 and stride == 1
    band_rows = max(1, min(out, max(BAND_BUDGET // (rows * out), -(-MINIMUM_BAND_COLUMNS // out))))
    if batch > 1 and plane < PRODUCT_COLUMNS and (pointwise or band_rows == out):
        per_product = min(batch, -(-PRODUCT_COLUMNS // plane))
        return [(cout, plane * min(per_product, batch - first), rows)
                for first in range(0, batch, per_product)]
    if pointwise:
        return [(cout, plane, rows)] * batch
    bands = [(cout, min(band_rows, out - start) * out, rows) for start in range(0, out, band_rows)]
    return bands * batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_set_num_threads(1)
    pointer = ctypes.c_void_p
    calls = [shape for conv in resnet50_convolutions() for shape in products(conv, args.batch)]
    buffers = {}
    big = [(512, 3136, 1152)]
    for m, n, k in set(calls) | set(big):
        buffers[m, n, k] = (np.random.rand(m, k).astype(np.float32),
                            np.random.rand(k, n).astype(np.float32),
                            np.empty((m, n), np.float32))

    def run(shapes):
        for m, n, k in shapes:
            a, b, c = buffers[m, n, k]
            blas.cblas_sgemm(101, 111, 111, m, n, k, ctypes.c_float(1.0), pointer(a.ctypes.data), k,
                             pointer(b.ctypes.data), n, ctypes.c_float(0.0),
                             pointer(c.ctypes.data), n)

    def median_seconds(shapes):
        run(shapes)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run(shapes)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    flops = sum(2 * m * n * k for m, n, k in calls)
    seconds = median_seconds(calls)
    big_rate = 2 * 512 * 3136 * 1152 / median_seconds(big) / 1e9
    print(f"resnet50 224x224 batch {args.batch}: {len(calls)} sgemm calls, {flops / 1e9:.2f} GFLOP")
    print(f"  products alone, 1 thread: {seconds * 1000:.1f} ms = {flops / seconds / 1e9:.0f} GFLOP/s")
    print(f"  sgemm 512x3136x1152, 1 thread: {big_rate:.0f} GFLOP/s")
    print(f"  the network's products run at {flops / seconds / 1e9 / big_rate:.0%} of that rate")


if __name__ == "__main__":
    main()
