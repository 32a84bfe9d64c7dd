"""Tests of the ``swiftcam explain`` command line.

End-to-end runs go through ``python -m swiftcam`` in a subprocess (with the same swiftcam the
tests import); smaller checks call :func:`swiftcam.cli.main` in-process. The model is the
``basic`` fixture (10 classes, no labels); the demo model's layout is reproduced in a
temporary folder (``SWIFTCAM_DEMO_DIR``) so that ``--examples`` and the default model are
tested whether or not the trained demo files are installed.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import swiftcam
from swiftcam import _safetensors, cli, demo
from swiftcam.explanation import explain

PACKAGE_PARENT = str(Path(swiftcam.__file__).resolve().parents[1])


def run_cli(*args, cwd, demo_dir=None):
    """Run ``python -m swiftcam`` and return the CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, env.get("PYTHONPATH")]))
    env.pop("SWIFTCAM_DEMO_DIR", None)
    if demo_dir is not None:
        env["SWIFTCAM_DEMO_DIR"] = str(demo_dir)
    return subprocess.run([sys.executable, "-m", "swiftcam", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def write_images(folder, names, size=(40, 52), seed=0):
    """Random RGB images with the given file names; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        pixels = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths


def read_summary(out_dir):
    return json.loads((out_dir / "summary.json").read_text())


def check_overlay(path, min_width):
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert picture.width >= min_width


def make_fake_demo_dir(folder, weights_path):
    """Write the demo files' layout into ``folder``, with ``weights_path`` as the model (10
    classes "shape0".."shape9", 48x48 inputs, two example images); returns ``folder``."""
    (folder / "examples").mkdir(parents=True)
    shutil.copy(weights_path, folder / "demo_resnet.safetensors")
    names = [f"shape{i}" for i in range(10)]
    (folder / "demo_labels.json").write_text(json.dumps(names))
    card = {"weights": "demo_resnet.safetensors", "labels": "demo_labels.json",
            "input": {"size": [48, 48], "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225]}}
    (folder / "demo_model.json").write_text(json.dumps(card))
    write_images(folder / "examples", ["shape3_0.png", "shape7_0.png"], size=(48, 48))
    manifest = {"examples": [{"file": "shape3_0.png", "label": 3, "class": "shape3"},
                             {"file": "shape7_0.png", "label": 7, "class": "shape7"}]}
    (folder / "examples" / "examples.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def fake_demo_dir(basic, tmp_path):
    """The demo files' layout, with the basic fixture as the model."""
    return make_fake_demo_dir(tmp_path / "demo", basic.weights_path)


# -- end to end -------------------------------------------------------------------------------

def test_directory_with_a_corrupt_image(basic, basic_model, tmp_path):
    inputs = tmp_path / "in"
    good = write_images(inputs, ["a.png", "b.jpg", "c.bmp"])
    (inputs / "broken.png").write_bytes(b"this is not an image")
    (inputs / "notes.txt").write_text("not scanned")
    out = tmp_path / "out"
    done = run_cli("explain", inputs, "--weights", basic.weights_path, "--top-k", "2",
                   "--out", out, cwd=tmp_path)

    assert done.returncode == 1, done.stderr
    assert "broken.png: cannot read the image" in done.stderr
    assert "notes.txt" not in done.stderr + done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "summary.json"]
    summary = read_summary(out)
    assert [Path(r["file"]).name for r in summary["images"]] == ["a.png", "b.jpg", "c.bmp"]
    assert [Path(e["file"]).name for e in summary["errors"]] == ["broken.png"]
    assert summary["method"] == "gradcam" and summary["layer"] == "layer4"
    for record, path in zip(summary["images"], good):
        assert len(record["classes"]) == 2 and record["labels"] == [
            f"class {c}" for c in record["classes"]]
        assert 1 >= record["scores"][0] >= record["scores"][1] > 0
        check_overlay(tmp_path / record["overlay"], min_width=3 * 128)
        expected = explain(basic_model, path, top_k=2)
        assert tuple(record["classes"]) == expected.classes
        np.testing.assert_allclose(record["scores"], expected.scores, atol=1e-6)
    assert "Wrote 3 overlay images and summary.json" in done.stdout


def test_json_output_equals_summary_file(basic, tmp_path):
    (image,) = write_images(tmp_path, ["only.png"])
    done = run_cli("explain", image, "--weights", basic.weights_path, "--json",
                   "--method", "GradCAM++", "--layer", "layer3", "--top-k", "20",
                   "--size", "32x24", "--out", "results", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == read_summary(tmp_path / "results")
    assert printed["method"] == "gradcam++" and printed["layer"] == "layer3"
    assert printed["top_k"] == 10 and printed["size"] == [32, 24]  # capped at num_classes
    (record,) = printed["images"]
    assert sorted(record["classes"]) == list(range(10))
    assert abs(sum(record["scores"]) - 1) < 1e-5
    assert record["overlay"] == os.path.join("results", "only.png")


def test_default_model_and_examples_from_the_demo_layout(fake_demo_dir, tmp_path):
    (extra,) = write_images(tmp_path, ["mine.png"], size=(64, 40))
    done = run_cli("explain", extra, "--examples", "--top-k", "1", "--out", "out",
                   cwd=tmp_path, demo_dir=fake_demo_dir)
    assert done.returncode == 0, done.stderr
    summary = read_summary(tmp_path / "out")
    assert summary["model"] == "demo" and summary["size"] == [48, 48]
    files = [Path(r["file"]).name for r in summary["images"]]
    assert files == ["mine.png", "shape3_0.png", "shape7_0.png"]
    assert [r.get("expected") for r in summary["images"]] == [None, "shape3", "shape7"]
    for record in summary["images"]:
        assert record["labels"] == [f"shape{record['classes'][0]}"]
    with Image.open(tmp_path / "out" / "mine.png") as panel:
        assert panel.height > 128  # the 48x48 input is shown enlarged


def test_progress_is_reported_for_many_images(basic, tmp_path):
    write_images(tmp_path / "many", [f"{i}.png" for i in range(7)], size=(32, 32))
    done = run_cli("explain", "many", "--weights", basic.weights_path, "--top-k", "1",
                   "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[1/7]" in done.stderr and "[7/7]" in done.stderr
    few = run_cli("explain", "many/0.png", "many/1.png", "--weights", basic.weights_path,
                  "--out", "out2", cwd=tmp_path)
    assert few.returncode == 0 and "[1/2]" not in few.stderr


def test_trained_demo_model_explains_its_examples(tmp_path):
    if not demo.is_available() or os.environ.get("SWIFTCAM_DEMO_DIR"):
        pytest.skip("the trained demo model (swiftcam/data/demo_resnet.safetensors) is not "
                    "installed")
    done = run_cli("explain", "--examples", "--json", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert len(summary["images"]) == len(demo.example_images()) > 0
    for record in summary["images"]:
        # The examples are images the demo model classifies correctly.
        assert record["labels"][0] == record["expected"], record


# -- in-process checks ------------------------------------------------------------------------

def test_usage_errors_exit_with_status_2(basic, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SWIFTCAM_DEMO_DIR", str(tmp_path / "nowhere"))
    (image,) = write_images(tmp_path, ["x.png"])
    weights = str(basic.weights_path)
    cases = [
        (["explain", "--weights", weights], "no images given"),
        (["explain", str(image), "--weights", weights, "--layer", "layer9"],
         "unknown layer 'layer9'; valid names are: conv1"),
        (["explain", str(image), "--weights", str(tmp_path / "none.safetensors")],
         "cannot load --weights"),
        (["explain", str(image)], "the demo model is not installed"),
        (["explain", "--examples", "--weights", weights], "the demo files are not installed"),
        (["explain", str(image), "--method", "nosuchcam"],
         "unknown method 'nosuchcam'; choose one of gradcam, "),
        (["explain", str(image), "--top-k", "0"], "expected a positive integer"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv + ["--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2, argv
        assert message in capsys.readouterr().err, argv


def test_help_and_unknown_method_list_every_method(capsys):
    from swiftcam.explanation import method_names

    assert {"scorecam", "ablationcam", "fullgrad"} <= set(method_names())
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name in method_names():
        assert f" {name}," in help_text or f" {name} (" in help_text, name
    assert "ignored by fullgrad" in help_text
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", "x.png", "--method", "grad-cam-3000"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown method 'grad-cam-3000'; choose one of " + ", ".join(method_names()) in error


@pytest.mark.parametrize("method, layer", [("fullgrad", None), ("scorecam", "layer3"),
                                           ("ablationcam", "layer3")])
def test_new_methods_write_overlays(basic, basic_model, tmp_path, capsys, recwarn, method,
                                    layer):
    (image,) = write_images(tmp_path, ["x.png"])
    # --layer is ignored by fullgrad: even a name that is no layer, and without a warning.
    argv = ["explain", str(image), "--weights", str(basic.weights_path), "--top-k", "2",
            "--method", method, "--layer", layer or "not-a-layer", "--out",
            str(tmp_path / "out"), "--json"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and len(recwarn) == 0
    summary = json.loads(captured.out)
    assert summary["method"] == method and summary["layer"] == layer
    (record,) = summary["images"]
    expected = explain(basic_model, image, method=method, layer=layer or "layer4", top_k=2)
    assert tuple(record["classes"]) == expected.classes
    assert expected.heatmaps.shape == (2, 52, 40)
    assert 0 <= expected.heatmaps.min() and expected.heatmaps.max() <= 1
    check_overlay(tmp_path / "out" / "x.png", min_width=3 * 128)


def test_missing_input_is_reported_and_others_processed(basic, tmp_path, capsys):
    (image,) = write_images(tmp_path, ["x.png"])
    status = cli.main(["explain", str(tmp_path / "gone.png"), str(image), "--weights",
                       str(basic.weights_path), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 1
    assert "gone.png: no such file or directory" in captured.err
    assert (tmp_path / "out" / "x.png").is_file()
    summary = read_summary(tmp_path / "out")
    assert len(summary["images"]) == 1 and len(summary["errors"]) == 1


def test_output_names_do_not_clash(basic, tmp_path, capsys):
    write_images(tmp_path / "one", ["same.png"], seed=1)
    write_images(tmp_path / "two", ["same.jpg", "summary.png"], seed=2)
    status = cli.main(["explain", str(tmp_path / "one"), str(tmp_path / "two"), "--weights",
                       str(basic.weights_path), "--out", str(tmp_path / "out"), "--json"])
    assert status == 0
    overlays = [Path(r["overlay"]).name for r in json.loads(capsys.readouterr().out)["images"]]
    assert overlays == ["same.png", "same-2.png", "summary.png"]
    assert (tmp_path / "out" / "summary.json").is_file()


def test_labels_file(basic, tmp_path, capsys):
    (image,) = write_images(tmp_path, ["x.png"])
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([f"name{i}" for i in range(10)]))
    status = cli.main(["explain", str(image), "--weights", str(basic.weights_path), "--labels",
                       str(labels), "--out", str(tmp_path / "out")])
    assert status == 0
    record = read_summary(tmp_path / "out")["images"][0]
    assert record["labels"] == [f"name{c}" for c in record["classes"]]
    assert f"name{record['classes'][0]}" in capsys.readouterr().out


def test_thousand_classes_get_imagenet_names(basic, tmp_path, capsys):
    if not cli.IMAGENET_LABELS_FILE.is_file():
        pytest.skip(f"{cli.IMAGENET_LABELS_FILE} is not installed")
    tensors = dict(basic.weights)
    rng = np.random.default_rng(0)
    tensors["fc.weight"] = rng.normal(size=(1000, tensors["fc.weight"].shape[1])).astype(
        np.float32)
    tensors["fc.bias"] = np.zeros(1000, dtype=np.float32)
    tensors["fc.bias"][281] = 100.0  # "tabby" wins whatever the image
    weights = tmp_path / "imagenet_like.safetensors"
    _safetensors.write(weights, tensors)
    (image,) = write_images(tmp_path, ["cat.png"])
    status = cli.main(["explain", str(image), "--weights", str(weights), "--top-k", "1",
                       "--out", str(tmp_path / "out")])
    assert status == 0
    record = read_summary(tmp_path / "out")["images"][0]
    assert record["classes"] == [281] and record["labels"] == ["tabby"]
    assert "tabby 100.0%" in capsys.readouterr().out
