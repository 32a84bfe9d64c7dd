"""Side-by-side timings of swiftcam against PyTorch eager and pytorch-grad-cam.

One process, alternating runs (swiftcam, reference, swiftcam, ...), medians of --repeats runs,
the same thread count on both sides. Without torch installed it reports swiftcam's own figures
(on random weights with torchvision's layout). Peak memory is measured in separate processes.

    python benchmarks/bench.py                      # resnet18 + resnet50, batch 1 and 8
    python benchmarks/bench.py --archs resnet50 --batches 1 --scaling --memory
"""

import argparse
import ctypes
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import swiftcam  # noqa: E402  (sets OPENBLAS_CORETYPE before the engine loads)
from random_resnet import random_state_dict  # noqa: E402

try:
    if os.environ.get("SWIFTCAM_BENCH_WITHOUT_TORCH"):
        raise ImportError("torch disabled for this process")
    import torch
    import torchvision
except ImportError:
    torch = None

#: Multiply-accumulates of one 224x224 image (torchvision's reported GMACs).
GMACS_224 = {"resnet18": 1.814, "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801,
             "wide_resnet50_2": 11.398, "resnext50_32x4d": 4.230}


def median_ms(function, repeats):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


#: Seconds of rest before each timed run, on both sides (--rest). Both libraries leave worker
#: threads spinning after a call (swiftcam's for 0.1 ms; torch's OpenMP pool for longer: a
#: swiftcam pass 50 ms after a torch pass is still ~15% slower, 0.5 s after it is not, see
#: benchmarks/after_torch.py); without a long enough rest, a run would share the cores with the
#: other library's threads. 0.5 s lets each side start on an idle machine.
SETTLE_SECONDS = 0.5


def alternating_ms(ours, reference, repeats):
    """Medians of alternating runs, so that machine noise hits both sides alike."""
    ours()
    if reference is not None:
        reference()
    ours_times, reference_times = [], []
    for _ in range(repeats):
        time.sleep(SETTLE_SECONDS)
        start = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - start)
        if reference is not None:
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            reference()
            reference_times.append(time.perf_counter() - start)
    ours_ms = 1000 * statistics.median(ours_times)
    reference_ms = 1000 * statistics.median(reference_times) if reference_times else None
    return ours_ms, reference_ms


SGEMM_SHAPE = (512, 3136, 1152)  # m, n, k: a ResNet-sized product (layer1's 3x3 convolution)


def sgemm_runner(threads, m=SGEMM_SHAPE[0], n=SGEMM_SHAPE[1], k=SGEMM_SHAPE[2]):
    """A function that runs one OpenBLAS sgemm (Debian's library, the one swiftcam loads) on
    `threads` threads; its thread count is set again on every call, since swiftcam keeps
    OpenBLAS at one thread."""
    blas = ctypes.CDLL("libopenblas.so.0")
    a = np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(k, n).astype(np.float32)
    c = np.empty((m, n), np.float32)
    pointer = ctypes.c_void_p

    def run():
        blas.openblas_set_num_threads(threads)
        blas.cblas_sgemm(101, 111, 111, m, n, k, ctypes.c_float(1.0), pointer(a.ctypes.data), k,
                         pointer(b.ctypes.data), n, ctypes.c_float(0.0), pointer(c.ctypes.data), n)
        blas.openblas_set_num_threads(1)
    return run


def sgemm_gflops(threads, repeats=7):
    """The OpenBLAS sgemm rate on a ResNet-sized product."""
    m, n, k = SGEMM_SHAPE
    return 2 * m * n * k / (median_ms(sgemm_runner(threads), repeats) / 1000) / 1e9


def build_models(arch):
    """(swiftcam model, torch module or None) with the same random weights."""
    if torch is None:
        return swiftcam.load(random_state_dict(arch)), None
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)().eval()
    return swiftcam.load({k: v.detach().numpy() for k, v in net.state_dict().items()}), net


def reference_cam(net, method, layer):
    import pytorch_grad_cam
    return getattr(pytorch_grad_cam, method)(model=net, target_layers=[getattr(net, layer)])


def time_cases(arch, batch, size, repeats):
    model, net = build_models(arch)
    x = np.random.default_rng(1).random((batch, 3, size, size), dtype=np.float32)
    xt = torch.from_numpy(x) if net is not None else None
    have_reference = net is not None
    try:
        import pytorch_grad_cam  # noqa: F401
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        have_reference = False
    rows = []

    def torch_forward():
        with torch.inference_mode():
            net(xt)
    ours, ref = alternating_ms(lambda: model(x), torch_forward if net is not None else None, repeats)
    rows.append(("forward", ours, ref, "torch eager forward"))
    forward_ms = ours
    # The machine's sgemm rate, in runs alternating with swiftcam's forward pass: this VM's speed
    # drifts by 10-20% within minutes, so a rate measured once at the start is a poor yardstick.
    _, sgemm_ms = alternating_ms(lambda: model(x), sgemm_runner(swiftcam.get_num_threads()), repeats)
    m, n, k = SGEMM_SHAPE
    rows.append(("OpenBLAS sgemm 512x3136x1152", None, sgemm_ms, "2 * m * n * k flops"))
    sgemm_rate = 2 * m * n * k / (sgemm_ms / 1000) / 1e9

    for label, method, layer in [("GradCAM layer4", "GradCAM", "layer4"), ("GradCAM layer3", "GradCAM", "layer3"),
                                 ("GradCAM++ layer4", "GradCAMPlusPlus", "layer4")]:
        cam = getattr(swiftcam, method)(model, target_layers=[layer])
        reference = None
        if have_reference:
            ref_cam = reference_cam(net, method, layer)
            reference = lambda ref_cam=ref_cam: ref_cam(input_tensor=xt, targets=None)  # noqa: E731
        ours, ref = alternating_ms(lambda cam=cam: cam(x), reference, repeats)
        rows.append((label, ours, ref, "pytorch-grad-cam"))

    cam = swiftcam.GradCAM(model, target_layers=["layer4"])
    reference = None
    if have_reference:
        ref_cam = reference_cam(net, "GradCAM", "layer4")
        with torch.inference_mode():
            top = torch.topk(net(xt), 5, dim=1).indices.numpy()

        def reference():
            for rank in range(5):
                ref_cam(input_tensor=xt, targets=[ClassifierOutputTarget(int(c)) for c in top[:, rank]])
    ours, ref = alternating_ms(lambda: cam.top_k(x, k=5), reference, repeats)
    rows.append(("top-5 classes", ours, ref, "5 pytorch-grad-cam calls"))
    return rows, forward_ms, sgemm_rate


def print_table(arch, batch, size, rows, forward_ms, sgemm_rate):
    print(f"\n### {arch}, batch {batch}, {size}x{size}\n")
    print("| case | swiftcam ms | reference ms | swiftcam / reference | reference |")
    print("|---|---:|---:|---:|---|")
    for label, ours, ref, what in rows:
        if ours is None:
            continue  # the sgemm yardstick, reported below
        ratio = f"{ours / ref:.2f}x" if ref else "-"
        ref_text = f"{ref:.1f}" if ref else "-"
        print(f"| {label} | {ours:.1f} | {ref_text} | {ratio} | {what} |")
    by_label = {label: ours for label, ours, _, _ in rows}
    gflop = 2 * GMACS_224.get(arch, float("nan")) * batch * (size / 224) ** 2
    forward_rate = gflop / (forward_ms / 1000)
    print(f"\nswiftcam: GradCAM layer4 / forward = {by_label['GradCAM layer4'] / forward_ms:.2f}, "
          f"layer3 / forward = {by_label['GradCAM layer3'] / forward_ms:.2f}, "
          f"top-5 / one class = {by_label['top-5 classes'] / by_label['GradCAM layer4']:.2f}; "
          f"forward {forward_rate:.1f} GFLOP/s = {forward_rate / sgemm_rate:.0%} of the "
          f"{sgemm_rate:.0f} GFLOP/s of a 2-thread OpenBLAS sgemm {SGEMM_SHAPE[0]}x{SGEMM_SHAPE[1]}x{SGEMM_SHAPE[2]} "
          f"timed in alternation with it")


def scaling_table(arch, repeats):
    model, _ = build_models(arch)
    print(f"\n### swiftcam {arch} forward: time against batch and input size\n")
    print("| batch | size | ms | ms per image per 224² |")
    print("|---:|---:|---:|---:|")
    for size in (112, 224, 448):
        for batch in (1, 2, 4, 8, 16):
            if size == 448 and batch > 4:
                continue
            x = np.random.default_rng(2).random((batch, 3, size, size), dtype=np.float32)
            ms = median_ms(lambda x=x: model(x), repeats)
            print(f"| {batch} | {size} | {ms:.1f} | {ms / batch / (size / 224) ** 2:.1f} |")


def peak_rss_mb(side, arch, batch, weights):
    """Peak RSS of a fresh process that loads the model and computes one CAM. The swiftcam
    process loads `weights` (a .safetensors file) and never imports torch."""
    env = dict(os.environ)
    if side == "swiftcam":
        env["SWIFTCAM_BENCH_WITHOUT_TORCH"] = "1"
    output = subprocess.run([sys.executable, __file__, "--rss-child", side, "--archs", arch,
                             "--batches", str(batch), "--weights", weights],
                            capture_output=True, text=True, check=True, env=env)
    return float(output.stdout.strip().splitlines()[-1])


def rss_child(side, arch, batch, weights):
    x = np.random.default_rng(1).random((batch, 3, 224, 224), dtype=np.float32)
    if side == "swiftcam":
        model = swiftcam.load(weights)
        swiftcam.GradCAM(model, target_layers=["layer4"])(x)
    else:
        net = getattr(torchvision.models, arch)().eval()
        reference_cam(net, "GradCAM", "layer4")(input_tensor=torch.from_numpy(x), targets=None)
    # VmHWM is this process's own peak; ru_maxrss would include the forking parent's RSS.
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(peak_kib / 1024)


def main():
    global SETTLE_SECONDS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="resnet18,resnet50")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rest", type=float, default=SETTLE_SECONDS,
                        help="seconds of rest before each timed run (default %(default)s)")
    parser.add_argument("--scaling", action="store_true", help="also time batch and input-size scaling")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS in fresh processes")
    parser.add_argument("--no-timing", action="store_true", help="skip the timing tables")
    parser.add_argument("--rss-child", choices=["swiftcam", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    SETTLE_SECONDS = args.rest
    archs = args.archs.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    swiftcam.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args.rss_child, archs[0], batches[0], args.weights)

    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()} {platform.release()}")
    print(f"swiftcam {swiftcam.__version__}; forward products on {swiftcam.gemm_kernel()}; "
          f"OpenBLAS core {swiftcam.blas_core_name()}, "
          f"{swiftcam.get_num_threads()} threads; torch "
          f"{torch.__version__ + f' ({torch.get_num_threads()} threads)' if torch else 'not installed'}")
    print(f"OpenBLAS sgemm 512x3136x1152: {sgemm_gflops(1):.0f} GFLOP/s on 1 thread, "
          f"{sgemm_gflops(args.threads):.0f} GFLOP/s on {args.threads} threads")
    swiftcam.set_num_threads(args.threads)
    for arch in archs if not args.no_timing else []:
        for batch in batches:
            rows, forward_ms, sgemm_rate = time_cases(arch, batch, args.size, args.repeats)
            print_table(arch, batch, args.size, rows, forward_ms, sgemm_rate)
    if args.scaling:
        scaling_table(archs[-1], args.repeats)
    if args.memory:
        print("\n### peak RSS, load + one GradCAM (fresh process each)\n")
        print("| arch | batch | swiftcam MB | torch + pytorch-grad-cam MB | ratio |")
        print("|---|---:|---:|---:|---:|")
        import tempfile
        from swiftcam import _safetensors
        for arch in archs:
            weights = os.path.join(tempfile.mkdtemp(), f"{arch}.safetensors")
            _safetensors.write(weights, random_state_dict(arch))
            for batch in batches:
                ours = peak_rss_mb("swiftcam", arch, batch, weights)
                theirs = peak_rss_mb("torch", arch, batch, weights) if torch is not None else None
                ratio = f"{ours / theirs:.2f}x" if theirs else "-"
                theirs_text = f"{theirs:.0f}" if theirs else "-"
                print(f"| {arch} | {batch} | {ours:.0f} | {theirs_text} | {ratio} |")


if __name__ == "__main__":
    main()
