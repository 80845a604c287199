"""Data files: matching model inputs, validation with clear errors."""

import numpy as np
import pytest

from graphs import cnn
from onnx2snn import DataError
from onnx2snn.data import from_arrays, load_npz


def test_x_or_input_name_and_exact_integer_cast(tmp_path):
    model = cnn()
    x = np.random.default_rng(0).integers(0, 255, size=(5, 2, 6, 6)).astype(np.uint8)
    data = from_arrays({"x": x, "y": np.arange(5)}, model)
    assert data.inputs["x"].dtype == np.float32 and (data.inputs["x"] == x).all()
    np.savez(tmp_path / "d.npz", x=x)
    assert load_npz(tmp_path / "d.npz", model).labels is None
    assert len(from_arrays({"x": x}, model).head(2)) == 2


@pytest.mark.parametrize("arrays,needle", [
    ({"z": np.zeros((2, 2, 6, 6))}, "no array for model input 'x'"),
    ({"x": np.zeros((2, 3, 6, 6))}, "expects"),
    ({"x": np.zeros((0, 2, 6, 6))}, "no samples"),
    ({"x": np.full((2, 2, 6, 6), np.nan)}, "NaN"),
    ({"x": np.zeros((2, 2, 6, 6), dtype=bool)}, "dtype"),
    ({"x": np.zeros((2, 2, 6, 6)), "y": np.array([0])}, "labels"),
    ({"x": np.zeros((2, 2, 6, 6)), "y": np.array([0.5, np.nan])}, "NaN"),
    ({"x": np.zeros((2, 2, 6, 6)), "y": np.array(["a", "b"])}, "numbers"),
])
def test_bad_arrays_raise_data_error(arrays, needle):
    with pytest.raises(DataError, match=needle):
        from_arrays(arrays, cnn())


def test_unreadable_or_missing_npz(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "none.npz", cnn())
    (tmp_path / "bad.npz").write_text("nope")
    with pytest.raises(DataError, match="not a readable"):
        load_npz(tmp_path / "bad.npz", cnn())


def test_integral_float_labels_are_classes_and_other_floats_are_targets():
    x = np.zeros((3, 2, 6, 6))
    assert from_arrays({"x": x, "y": np.array([0.0, 2.0, 1.0])}, cnn()).labels.dtype == np.int64
    targets = from_arrays({"x": x, "y": np.array([0.5, 2.0, 1.0])}, cnn()).labels
    assert targets.dtype == np.float64


def test_npy_and_image_folder_inputs(tmp_path):
    """.npy arrays and class-folder images (Pillow) load into the model's layout with
    x = (pixels/255 - mean) / std; labels come from the sorted class folders."""
    Image = pytest.importorskip("PIL.Image")
    from conftest import MODELS
    from onnx2snn.data import ImageOptions, load_path
    from onnx2snn.graph.load import load_model

    model = load_model(MODELS / "digits_cnn.onnx")
    test = np.load(MODELS / "digits_cnn.test.npz")
    x, y = test["x"][:20], test["y"][:20]
    np.save(tmp_path / "x.npy", x)
    assert np.array_equal(load_path(tmp_path / "x.npy", model).inputs["input"], x)
    for i, (img, label) in enumerate(zip(x, y)):
        folder = tmp_path / "images" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(img[0].astype(np.float64) * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:03d}.png")
    data = load_path(tmp_path / "images", model, images=ImageOptions(std=(1 / 16,)))
    classes = sorted({int(v) for v in y})
    assert sorted(data.labels.tolist()) == sorted(classes.index(int(v)) for v in y)
    assert data.inputs["input"].shape == (20, 1, 8, 8)
    assert np.abs(np.sort(data.inputs["input"].reshape(20, -1), axis=0)
                  - np.sort(x.reshape(20, -1), axis=0)).max() <= 16 / 255


def test_image_folder_problems_are_data_errors(tmp_path):
    pytest.importorskip("PIL.Image")
    from conftest import MODELS
    from onnx2snn.data import load_path
    from onnx2snn.graph.load import load_model

    model = load_model(MODELS / "digits_cnn.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_path(tmp_path / "empty", model)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_path(tmp_path / "broken", model)
    with pytest.raises(DataError, match="neither"):
        load_path(tmp_path / "broken", cnn())  # 2 channels: not an image layout
