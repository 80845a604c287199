"""Loading model files safely and normalising graphs."""

import numpy as np
import onnx
import pytest
from onnx import external_data_helper

from graphs import GraphBuilder, cnn, inputs, mlp, run_ort
from onnx2snn import ModelLoadError
from onnx2snn.graph import load


def test_missing_directory_empty_and_garbage_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load.load_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelLoadError, match="not a file"):
        load.load_model(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load.load_model(tmp_path / "empty.onnx")
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    with pytest.raises(ModelLoadError):
        load.load_model(tmp_path / "text.onnx")
    data = mlp().SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        load.load_model(tmp_path / "cut.onnx")


def test_external_data_inside_the_folder_loads(tmp_path):
    model = mlp()
    onnx.save(mlp(), tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    loaded = load.load_model(tmp_path / "m.onnx")
    x = inputs((8,), n=4)
    np.testing.assert_array_equal(run_ort(loaded, {"x": x})[0], run_ort(model, {"x": x})[0])


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd", "missing.data"])
def test_external_data_outside_or_missing_is_refused(tmp_path, location):
    model = mlp()
    tensor = model.graph.initializer[0]
    external_data_helper.set_external_data(tensor, location=location)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    (tmp_path / "sub").mkdir()
    onnx.save(model, tmp_path / "sub" / "m.onnx")
    (tmp_path / "outside.data").write_bytes(b"\0" * 4096)
    with pytest.raises(ModelLoadError, match="outside the model's folder|missing"):
        load.load_model(tmp_path / "sub" / "m.onnx")


def test_normalize_removes_identity_and_dropout_and_keeps_output_names():
    g = GraphBuilder()
    h = g.op("Identity", [g.relu(g.gemm("x", 4, 8))])
    h = g.op("Dropout", [h])
    g.op("Identity", [g.gemm(h, 8, 2)])
    g.nodes[-1].output[0] = "y"
    model = g.model({"x": ["N", 4]}, {"y": ["N", 2]})
    out = load.normalize(model)
    assert [n.op_type for n in out.graph.node] == ["Gemm", "Relu", "Gemm"]
    assert [o.name for o in out.graph.output] == ["y"]
    x = inputs((4,), n=3)
    np.testing.assert_allclose(run_ort(out, {"x": x})[0], run_ort(model, {"x": x})[0], rtol=1e-6)


def test_normalize_makes_the_batch_symbolic_and_names_nodes():
    g = GraphBuilder()
    g.gemm(g.relu(g.gemm("x", 4, 8)), 8, 2)
    g.nodes[-1].output[0] = "y"
    for node in g.nodes:
        node.name = ""
    model = g.model({"x": [1, 4]}, {"y": [1, 2]})
    out = load.normalize(model)
    assert out.graph.input[0].type.tensor_type.shape.dim[0].dim_param == load.BATCH
    names = [n.name for n in out.graph.node]
    assert all(names) and len(set(names)) == len(names)


def test_old_opset_is_upgraded():
    model, old = cnn(), cnn(opset=11)
    out = load.normalize(old)
    assert next(o.version for o in out.opset_import if o.domain == "") == load.MIN_OPSET
    x = inputs((2, 6, 6), n=3)
    np.testing.assert_allclose(run_ort(out, {"x": x})[0], run_ort(model, {"x": x})[0], rtol=1e-5)


def test_fixed_batch_export_is_made_dynamic():
    g = GraphBuilder()
    h = g.relu(g.conv("x", 2, 3))
    h = g.op("Reshape", [h, g.const(np.array([1, 3 * 6 * 6], np.int64))])
    g.gemm(g.relu(g.gemm(h, 108, 8)), 8, 2)
    g.nodes[-1].output[0] = "y"
    model = g.model({"x": [1, 2, 6, 6]}, {"y": [1, 2]})
    out = load.normalize(model)
    x = inputs((2, 6, 6), n=5)
    y = np.concatenate([run_ort(model, {"x": x[i:i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(run_ort(out, {"x": x})[0], y, rtol=1e-5, atol=1e-6)


def test_batchnorm_is_folded_into_conv_and_gemm():
    g = GraphBuilder()
    rng = np.random.default_rng(0)

    def bn(x, c):
        params = [rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 2, c)]
        return g.op("BatchNormalization", [x] + [g.const(p.astype(np.float32)) for p in params])

    h = g.relu(bn(g.conv("x", 2, 4), 4))
    h = g.op("Flatten", [h], axis=1)
    g.gemm(g.relu(bn(g.gemm(h, 144, 8), 8)), 8, 2)
    g.nodes[-1].output[0] = "y"
    model = g.model({"x": ["N", 2, 6, 6]}, {"y": ["N", 2]})
    out = load.normalize(model)
    assert "BatchNormalization" not in [n.op_type for n in out.graph.node]
    x = inputs((2, 6, 6), n=7)
    np.testing.assert_allclose(run_ort(out, {"x": x})[0], run_ort(model, {"x": x})[0], rtol=1e-4, atol=1e-5)
