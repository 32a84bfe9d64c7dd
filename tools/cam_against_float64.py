"""How far swiftcam's and pytorch-grad-cam's float32 CAMs each are from a float64 run.

For one fixture case (default: bottleneck) and its eigen_smooth CAMs (or the keys given), runs
pytorch-grad-cam on the case's model in float32 and in float64 and swiftcam on the same weights,
and prints, per image, the max |difference| of swiftcam and of the float32 reference from
float64, and between the two float32 maps. Backs the CAM fixture tolerance (1e-5, or twice the
reference's own float32 error): the two float32 maps can sit on opposite sides of the exact one.
Needs torch, torchvision and grad-cam (the repository's .venv-torch), and swiftcam installed:

    .venv-torch/bin/python tools/cam_against_float64.py [--case bottleneck] [--key GradCAMPlusPlus_layer4_eigensmooth]
"""

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "python" / "tests"))
import generate_fixtures as fixtures  # noqa: E402
import swiftcam  # noqa: E402
from conftest import entry_targets, get_case, get_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="bottleneck")
    parser.add_argument("--key", action="append", help="CAM id (default: every eigen_smooth CAM)")
    args = parser.parse_args()
    spec_case = next(c for c in fixtures.CASES if c.name == args.case)
    model, x = fixtures.build_case(spec_case)
    meta = json.loads((ROOT / "Tests" / "Fixtures" / args.case / "meta.json").read_text())
    entries = {entry["key"][len("cam/"):]: entry for entry in meta["cams"]}
    case, swift_model = get_case(args.case), get_model(args.case)
    print(f"{args.case}: swiftcam forward products on {swiftcam.gemm_kernel()}")
    for spec in spec_case.cams:
        if args.key and spec.cam_id not in args.key or not args.key and not spec.eigen_smooth:
            continue
        entry = entries[spec.cam_id]
        classes = entry["targets"].get("classes")
        # Projections have an arbitrary sign: each run also with every sign pattern flipped; per
        # image swiftcam's map counts against the nearest variant (as in the fixture tests), the
        # reference against float64 with the same signs.
        signs = [None] + (list(fixtures.sign_variants(spec).values()) if spec.sign_ambiguous else [])
        model64 = copy.deepcopy(model).double()
        exact = [fixtures.run_cam(model64, x.double(), spec, classes, signs=s) for s in signs]
        reference = [fixtures.run_cam(model, x, spec, classes, signs=s) for s in signs]
        with getattr(swiftcam, entry["method"])(model=swift_model, target_layers=entry["target_layers"]) as cam:
            ours = cam(input_tensor=case.input, targets=entry_targets(entry), eigen_smooth=entry["eigen_smooth"])

        def distance(map_, variants, image):
            return min(np.abs(map_ - v[image]).max() for v in variants)
        for image in range(len(ours)):
            print(f"  {spec.cam_id} image {image}: swiftcam - float64 {distance(ours[image], exact, image):.2e}, "
                  f"reference float32 - float64 {min(np.abs(r[image] - e[image]).max() for r, e in zip(reference, exact)):.2e}, "
                  f"swiftcam - reference {distance(ours[image], reference, image):.2e}")

if __name__ == "__main__":
    main()
