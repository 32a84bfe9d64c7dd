"""How much a torch forward pass just before slows swiftcam's (cache eviction, not threads).

Times swiftcam's resnet50 forward pass alone, then right after a torch forward pass with a rest
of 0.05 s and 0.5 s in between (long after torch's OpenMP threads stop spinning), then alone
again. Medians of 9. Needs torch and torchvision (the repository's .venv-torch):

    .venv-torch/bin/python benchmarks/after_torch.py [--threads 2]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import swiftcam  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    swiftcam.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = torchvision.models.resnet50().eval()
    model = swiftcam.load({k: v.detach().numpy() for k, v in net.state_dict().items()})
    x = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    xt = torch.from_numpy(x)
    model(x)
    for label, rest in [("alone", None), ("after torch, 0.05 s rest", 0.05),
                        ("after torch, 0.5 s rest", 0.5), ("alone", None)]:
        times = []
        for _ in range(9):
            if rest is None:
                time.sleep(0.05)
            else:
                with torch.inference_mode():
                    net(xt)
                time.sleep(rest)
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
        print(f"{label:26s} swiftcam forward median {1000 * np.median(times):.1f} ms")


if __name__ == "__main__":
    main()
