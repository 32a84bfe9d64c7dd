"""ScoreCAM and AblationCAM: swiftcam against pytorch-grad-cam, side by side.

resnet50 (random init), target layer4, one 224x224 image, one target class. Alternating runs
(swiftcam, reference, swiftcam, ...), medians; the same thread count on both sides (torch's
intra-op threads and the engine's OpenBLAS pool). Needs torch, torchvision and grad-cam (the
repository's .venv-torch):

    .venv-torch/bin/python benchmarks/perturbation_cams.py [--repeats 3] [--threads 2]

Each ScoreCAM call is 2048 full forward passes (one per layer4 channel), so a run takes minutes;
AblationCAM runs only the top of the network (layer4's output through avgpool and fc) 2048
times. swiftcam's ScoreCAM(top_channels=256) (not in the reference) is timed too.
"""

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import swiftcam  # noqa: E402
from swiftcam.perturbation_cams import AblationCAM, ScoreCAM  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from pytorch_grad_cam import AblationCAM as ReferenceAblationCAM  # noqa: E402
from pytorch_grad_cam import ScoreCAM as ReferenceScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


@contextlib.contextmanager
def quiet_tqdm():
    """The reference draws tqdm progress bars; silence them (their cost is negligible)."""
    from pytorch_grad_cam import ablation_cam, score_cam
    silent = types.SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    saved = [(m, m.tqdm) for m in (ablation_cam, score_cam)]
    for module, _ in saved:
        module.tqdm = silent
    try:
        yield
    finally:
        for module, original in saved:
            module.tqdm = original


def alternating(ours, reference, repeats):
    """Median seconds of alternating runs (after one untimed run of each)."""
    ours()
    reference()
    ours_times, reference_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference()
        reference_times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(reference_times), ours_times, \
        reference_times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--skip-score", action="store_true", help="only AblationCAM")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    swiftcam.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None).eval()
    model = swiftcam.load({k: v.detach().numpy() for k, v in net.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    xt = torch.from_numpy(x)
    category = int(np.argmax(model(x)[0]))
    ours_targets = [swiftcam.ClassifierOutputTarget(category)]
    reference_targets = [ClassifierOutputTarget(category)]

    print(f"resnet50 (random init), layer4, 1x3x{args.size}x{args.size}, class {category}; "
          f"{args.threads} thread(s) on both sides; {platform.processor() or platform.machine()}"
          f", {os.cpu_count()} logical CPUs; BLAS kernels {swiftcam.blas_core_name()}; "
          f"torch {torch.__version__}")
    rows = []
    with quiet_tqdm():
        ablation_ref = ReferenceAblationCAM(model=net, target_layers=[net.layer4])
        ablation = AblationCAM(model, ["layer4"])
        ours, ref, ours_all, ref_all = alternating(
            lambda: ablation(x, ours_targets),
            lambda: ablation_ref(input_tensor=xt, targets=reference_targets), args.repeats)
        rows.append(("AblationCAM", ours, ref, ours_all, ref_all))
        if not args.skip_score:
            score_ref = ReferenceScoreCAM(model=net, target_layers=[net.layer4])
            score = ScoreCAM(model, ["layer4"])
            ours, ref, ours_all, ref_all = alternating(
                lambda: score(x, ours_targets),
                lambda: score_ref(input_tensor=xt, targets=reference_targets), args.repeats)
            rows.append(("ScoreCAM", ours, ref, ours_all, ref_all))
            fast = ScoreCAM(model, ["layer4"], top_channels=256)
            start = time.perf_counter()
            fast(x, ours_targets)
            rows.append(("ScoreCAM top_channels=256 (swiftcam only)",
                         time.perf_counter() - start, None, None, None))
    print(f"{'method':45s} {'swiftcam':>10s} {'reference':>10s} {'speed-up':>9s}")
    for name, ours, ref, ours_all, ref_all in rows:
        if ref is None:
            print(f"{name:45s} {ours:9.2f}s {'':>10s} {'':>9s}")
        else:
            print(f"{name:45s} {ours:9.2f}s {ref:9.2f}s {ref / ours:8.2f}x")
            print(f"{'':45s} runs: swiftcam {[round(t, 2) for t in ours_all]}, "
                  f"reference {[round(t, 2) for t in ref_all]}")


if __name__ == "__main__":
    main()
