"""Execute notebooks/quickstart.ipynb so that it cannot rot.

The notebook runs in a fresh ``python3`` Jupyter kernel that imports the same swiftcam as the
tests. It uses the trained demo model when it is installed; otherwise the demo files' layout
is reproduced with the ``basic`` fixture model (``SWIFTCAM_DEMO_DIR``), which exercises every
cell just the same. Skipped, with the reason, when nbclient, nbformat or ipykernel is missing
(``pip install nbclient nbformat ipykernel``).
"""

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

import swiftcam
from swiftcam import demo
from test_cli import make_fake_demo_dir

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (no python3 kernel)")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
PACKAGE_PARENT = str(Path(swiftcam.__file__).resolve().parents[1])


@pytest.fixture
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_committed_notebook_has_no_outputs(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_executes(notebook, basic, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    if os.environ.get("SWIFTCAM_DEMO_DIR") or not demo.is_available():
        monkeypatch.setenv("SWIFTCAM_DEMO_DIR",
                           str(make_fake_demo_dir(tmp_path / "demo", basic.weights_path)))
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"the notebook failed:\n{error}", pytrace=False)

    pngs = [output["data"]["image/png"] for cell in notebook.cells
            if cell.cell_type == "code" for output in cell.outputs
            if "image/png" in output.get("data", {})]
    # explanation, methods, layers, top-3 and the API montage at least.
    assert len(pngs) >= 5
    for data in pngs:
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        assert picture.format == "PNG" and min(picture.size) > 100
