"""In-process A/B timing of libswiftcam.so builds: the forward pass of each, interleaved.

Every build is a copy of `python/swiftcam/libswiftcam.so` from some commit. All are loaded into
one process through the C ABI (each copy has its own Swift runtime and thread pool) and called
in turn, round after round, so machine noise hits all of them alike. Used for the "measured by
alternating runs of two library builds" figures in BENCHMARKS.md. Do not mix a build older than
swiftcam's own thread pool with newer ones: it sets OpenBLAS's process-wide thread count.

    python benchmarks/ab_libraries.py OLD.so NEW.so [--threads 2] [--rounds 25] [--batch 1]
    python benchmarks/ab_libraries.py LIB.so LIB.so --gemm openblas,own   # the two product paths
"""

import argparse
import ctypes
import os
import shutil
import sys
import tempfile
from pathlib import Path
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from random_resnet import random_state_dict  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--gemm", help="comma-separated SWIFTCAM_GEMM value per library "
                        "(openblas, or own for swiftcam's kernel where the CPU runs it)")
    args = parser.parse_args()
    gemm = args.gemm.split(",") if args.gemm else [None] * len(args.libraries)
    if len(gemm) != len(args.libraries):
        sys.exit("--gemm needs one value per library")
    scratch = tempfile.mkdtemp()
    weights = os.path.join(scratch, f"{args.arch}.safetensors")
    from swiftcam import _safetensors
    _safetensors.write(weights, random_state_dict(args.arch))

    handles = []
    for index, path in enumerate(args.libraries):
        copy = os.path.join(scratch, f"lib{index}.so")  # distinct paths: distinct library instances
        shutil.copy(path, copy)
        if gemm[index] is not None:
            os.environ["SWIFTCAM_GEMM"] = gemm[index]  # read by each copy when it loads a model
        library = ctypes.CDLL(copy, mode=os.RTLD_LOCAL)
        model = ctypes.c_void_p()
        message = ctypes.create_string_buffer(512)
        status = library.swiftcam_model_load_file(weights.encode(), ctypes.byref(model), message, 512)
        if status != 0:
            sys.exit(f"{path}: {message.value.decode()}")
        library.swiftcam_set_num_threads(ctypes.c_int64(args.threads))
        handles.append((library, model))

    x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    shape = (ctypes.c_int64 * 4)(*x.shape)
    logits = np.empty((args.batch, 1000), np.float32)
    times = [[] for _ in handles]
    first = []
    for round_index in range(args.rounds + 1):  # round 0 warms up
        for index, (library, model) in enumerate(handles):
            start = time.perf_counter()
            status = library.swiftcam_model_forward(
                model, ctypes.c_void_p(x.ctypes.data), shape, ctypes.c_void_p(logits.ctypes.data),
                ctypes.c_int64(logits.size), None, ctypes.c_int64(0))
            elapsed = time.perf_counter() - start
            if status != 0:
                sys.exit(f"{args.libraries[index]}: forward failed with status {status}")
            if round_index == 0:
                first.append(logits.copy())
            else:
                times[index].append(elapsed)
    print(f"{args.arch} 224x224 batch {args.batch}, {args.threads} threads, {args.rounds} rounds")
    for path, mode, samples in zip(args.libraries, gemm, times):
        label = path if mode is None else f"{path} (SWIFTCAM_GEMM={mode})"
        print(f"{label}: median {1000 * np.median(samples):.1f} ms, "
              f"p25 {1000 * np.percentile(samples, 25):.1f}, min {1000 * min(samples):.1f}")
    worst = max(float(np.abs(f - first[0]).max()) for f in first)
    print(f"largest logit difference from the first build: {worst:.3g}")


if __name__ == "__main__":
    main()
