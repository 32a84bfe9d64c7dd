"""Write python/swiftcam/data/imagenet_classes.json: the 1000 ImageNet-1k class names.

The names are torchvision's, from the metadata of its ImageNet weights
(``ResNet50_Weights.IMAGENET1K_V2.meta["categories"]``, the same list for every ImageNet-1k
classifier); reading it downloads nothing. Run with the torch venv from the repository root:

    .venv-torch/bin/python tools/make_imagenet_labels.py

The file is a JSON array of 1000 strings: entry ``i`` names class index ``i`` of the
classifier's output (e.g. 281 is "tabby", 0 is "tench").
"""

import argparse
import json
from pathlib import Path

from torchvision.models import ResNet50_Weights

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "python" / "swiftcam" / "data" / "imagenet_classes.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    categories = list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
    if len(categories) != 1000 or not all(isinstance(c, str) and c for c in categories):
        raise SystemExit(f"unexpected torchvision metadata: {len(categories)} categories")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as file:
        json.dump(categories, file, indent=0, ensure_ascii=False)
        file.write("\n")
    print(f"wrote {len(categories)} class names to {args.out}")


if __name__ == "__main__":
    main()
