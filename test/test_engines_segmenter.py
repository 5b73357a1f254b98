"""The Segmenter: backend choice, pre/post-processing geometry and encodings, agreement across
backends, uint16 labels, INT8, bad input; GPU paths run only where a GPU and the library exist."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from seg_perception.engines import (
    BackendUnavailable,
    Calibration,
    EngineError,
    Preprocessor,
    Segmenter,
    SegmenterInputError,
    choose_backend,
)
from seg_perception.engines.backends import BACKENDS
from seg_perception.io.encoding import EventWindow, encode_thermal
from seg_perception.io.events import EVENT_DTYPE
from seg_perception.labels import LabelClass, LabelSet
from seg_perception.models import save_checkpoint, stack_inputs, student_config
from seg_perception.models.registry import build_model
from seg_perception.sim.dataset import calibration_frames


@pytest.fixture(scope="module")
def frames():
    return list(calibration_frames(3))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-cache")


# --- backend choice -----------------------------------------------------------------------------

def _probe(available):
    return lambda backend, device: None if (backend, device) in available else f"{backend}/{device} missing"


ALL = {(b, d) for b in BACKENDS for d in ("cpu", "cuda")}


@pytest.mark.parametrize(("available", "precision", "expected"), [
    (ALL, "fp32", ("tensorrt", "cuda")),
    (ALL - {("tensorrt", "cuda")}, "fp32", ("onnxruntime", "cuda")),
    ({("torch", "cuda"), ("onnxruntime", "cpu"), ("torch", "cpu")}, "fp32", ("torch", "cuda")),
    ({("onnxruntime", "cpu"), ("torch", "cpu")}, "fp32", ("onnxruntime", "cpu")),
    ({("torch", "cpu")}, "fp32", ("torch", "cpu")),
    ({("onnxruntime", "cpu"), ("torch", "cpu")}, "int8", ("onnxruntime", "cpu")),
    ({("onnxruntime", "cuda"), ("onnxruntime", "cpu"), ("torch", "cpu")}, "bf16", ("torch", "cpu")),
    (ALL, "int8", ("tensorrt", "cuda")),
])
def test_auto_picks_the_fastest_available(available, precision, expected):
    backend, device, notes = choose_backend("auto", "auto", precision, probe=_probe(available))
    assert (backend, device) == expected
    order = [("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"), ("onnxruntime", "cpu"), ("torch", "cpu")]
    passed_over = order[: order.index(expected)]
    assert len(notes) == len(passed_over)  # one reason per candidate passed over
    assert all(note.startswith(f"{b}/{d}:") for note, (b, d) in zip(notes, passed_over))


def test_explicit_choices_and_failures():
    only_cpu = _probe({("onnxruntime", "cpu"), ("torch", "cpu")})
    assert choose_backend("torch", "auto", probe=only_cpu)[:2] == ("torch", "cpu")
    with pytest.raises(BackendUnavailable, match="tensorrt/cuda: tensorrt/cuda missing"):
        choose_backend("tensorrt", probe=only_cpu)
    with pytest.raises(BackendUnavailable, match="tensorrt does not run on cpu; it runs on cuda"):
        choose_backend("tensorrt", "cpu", probe=only_cpu)
    with pytest.raises(BackendUnavailable, match="onnxruntime/cpu: does not run bf16"):
        choose_backend("onnxruntime", "cpu", "bf16", probe=only_cpu)
    with pytest.raises(BackendUnavailable, match="backend 'tflite' is not known"):
        choose_backend("tflite")


def test_auto_on_this_machine_matches_what_is_installed():
    onnxruntime = importlib.util.find_spec("onnxruntime") is not None
    has_cuda = torch.cuda.is_available()
    backend, device, _ = choose_backend()
    if importlib.util.find_spec("tensorrt") is None and not has_cuda:
        assert (backend, device) == (("onnxruntime", "cpu") if onnxruntime else ("torch", "cpu"))
    else:
        assert device == "cuda"


# --- pre- and post-processing ------------------------------------------------------------------

def test_preprocess_encodes_like_the_training_data():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
    thermal = rng.integers(26000, 32000, (36, 64), dtype=np.uint16)
    grid = rng.standard_normal((5, 36, 64)).astype(np.float32)
    x, present, placement = Preprocessor(("rgb", "thermal", "events"), 5, 64, 36)(rgb, thermal, grid)
    np.testing.assert_allclose(x[0, :3].numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_allclose(x[0, 3].numpy(), encode_thermal(thermal), atol=1e-5)
    np.testing.assert_array_equal(x[0, 4:].numpy(), grid)
    assert present.tolist() == [[1.0, 1.0, 1.0]] and placement.box == (0, 0, 64, 36)


def test_preprocess_absent_modality_is_zero_and_not_present():
    rgb = np.full((36, 64, 3), 255, np.uint8)
    x, present, _ = Preprocessor(("rgb", "thermal", "events"), 5, 64, 36)(rgb=rgb)
    assert present.tolist() == [[1.0, 0.0, 0.0]]
    assert x[0, :3].min() == 1.0 and x[0, 3:].abs().max() == 0.0


def test_event_window_is_binned_into_the_model_grid():
    events = np.zeros(2, EVENT_DTYPE)
    events["x"], events["y"], events["p"], events["t"] = [1, 130], [1, 70], [1, 0], [0, 100]
    window = EventWindow(events, 160, 80, 0, 100)
    x, _, _ = Preprocessor(("events",), 2, 80, 40)(events=window)
    grid = x[0].numpy()
    # 2x2 binning: (1, 1) → cell (0, 0) in the first bin (ON); (130, 70) → (65, 35) in the last (OFF).
    assert grid[0, 0, 0] > 0 and grid[1, 35, 65] < 0 and np.count_nonzero(grid) == 2


def test_letterbox_places_and_pads_by_hand():
    pre = Preprocessor(("rgb",), 5, 64, 32, fit="letterbox")
    rgb = np.full((48, 64, 3), 255, np.uint8)  # 4:3 into 2:1 → 43x32 box, centred
    x, _, placement = pre(rgb=rgb)
    assert placement.box == (10, 0, 43, 32)
    assert x[0, :, :, :10].abs().max() == 0 and x[0, :, :, 53:].abs().max() == 0
    np.testing.assert_allclose(x[0, :, :, 10:53].numpy(), 1.0, atol=1e-6)


def test_postprocess_maps_back_by_nearest_pixel():
    from seg_perception.engines import Placement, Postprocessor

    post = Postprocessor(np.uint8)
    labels = torch.tensor([[[0, 1, 2, 3], [4, 5, 6, 7]]], dtype=torch.int32)
    confidence = labels.float() / 10
    refined = torch.tensor([[[[1.0]]]])
    out_labels, out_conf, out_refined = post({"labels": labels, "confidence": confidence, "refined": refined},
                                             Placement((8, 4), (0, 0, 4, 2), (4, 2)))
    expected = np.repeat(np.repeat(labels[0].numpy(), 2, axis=0), 2, axis=1)  # 2x nearest upsampling
    np.testing.assert_array_equal(out_labels, expected)
    np.testing.assert_allclose(out_conf, expected / 10)
    assert out_labels.dtype == np.uint8 and out_refined.all() and out_refined.shape == (4, 8)
    # Letterboxed: only the box maps back, padding never does.
    boxed = post({"labels": labels, "confidence": confidence, "refined": refined},
                 Placement((2, 2), (1, 0, 2, 2), (4, 2)))[0]
    np.testing.assert_array_equal(boxed, [[1, 2], [5, 6]])


# --- whole segmenter -------------------------------------------------------------------------

def test_onnxruntime_and_torch_agree_at_camera_resolution(frames, cache_dir):
    results = {}
    for backend in ("torch", "onnxruntime"):
        segmenter = Segmenter("student_rgb_thermal_events", backend=backend, cache_dir=cache_dir)
        results[backend] = [segmenter.segment(**frame) for frame in frames]
    for a, b, frame in zip(results["torch"], results["onnxruntime"], frames):
        assert a.labels.shape == frame["rgb"].shape[:2] and a.labels.dtype == np.uint8
        assert (a.labels == b.labels).mean() >= 0.999
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-3)
        assert set(a.timing) == {"preprocess", "inference", "postprocess", "total"}


def test_segmenter_equals_the_model_called_directly(frames, cache_dir):
    """A frame at the model's own size: the labels are exactly argmax of the checkpoint's logits."""
    segmenter = Segmenter("student_rgb_thermal_events", backend="torch", cache_dir=cache_dir)
    model, config = segmenter.source.checkpoint().model, segmenter.config
    frame = frames[0]
    result = segmenter.segment(rgb=frame["rgb"], events=frame["events"])  # thermal missing
    tensors = {"rgb": torch.from_numpy(frame["rgb"].transpose(2, 0, 1)[None] / 255.0).float(),
               "events": torch.from_numpy(frame["events"][None])}
    x, present = stack_inputs(tensors, config)
    with torch.inference_mode():
        out = model(x, present)
    np.testing.assert_array_equal(result.labels, out["logits"].argmax(1)[0].numpy())
    refined_fraction = result.refined.mean()
    assert abs(refined_fraction - segmenter.spec.k / out["refined"][0, 0].numel()) < 0.01


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_large_label_sets_come_back_as_uint16(backend, tmp_path):
    classes = tuple(LabelClass(i, f"class_{i}", (i % 256, (i * 7) % 256, (i * 13) % 256)) for i in range(300))
    label_set = LabelSet("big", classes, ignore_id=65535)
    torch.manual_seed(0)
    model = build_model(student_config(300, widths=(16, 24, 32), depths=(1, 1, 1), decoder_width=16))
    with torch.no_grad():  # spread the classifier so that ids above 255 win somewhere
        model.classifier.bias.copy_(torch.linspace(-1, 1, 300))
    path = save_checkpoint(tmp_path / "big.safetensors", model, label_set, model_id="big")
    rgb = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    result = Segmenter(path, backend=backend, input_size=(96, 64), cache_dir=tmp_path / "cache").segment(rgb)
    x, present = stack_inputs({"rgb": torch.from_numpy(rgb.transpose(2, 0, 1)[None] / 255.0).float()}, model.config)
    with torch.inference_mode():
        expected = model.eval()(x, present)["logits"].argmax(1)[0].numpy()
    assert result.labels.dtype == np.uint16 and result.labels.max() > 255
    assert (result.labels == expected).mean() >= 0.999


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_threads_bound_the_engine_and_the_torch_pre_and_post_processing(backend, cache_dir):
    before = torch.get_num_threads()
    try:
        segmenter = Segmenter("student_rgb", backend=backend, device="cpu", threads=1, cache_dir=cache_dir)
        assert torch.get_num_threads() == 1 and segmenter.describe()["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_bad_input_is_named(cache_dir):
    segmenter = Segmenter("student_rgb", backend="onnxruntime", cache_dir=cache_dir)
    with pytest.raises(SegmenterInputError, match=r"rgb must be a \(H, W, 3\) uint8 array in RGB order; got float32"):
        segmenter.segment(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(SegmenterInputError, match=r"takes \['rgb'\]; it cannot use \['thermal'\]"):
        segmenter.segment(np.zeros((10, 10, 3), np.uint8), thermal=np.zeros((10, 10), np.uint16))
    with pytest.raises(SegmenterInputError, match="no input"):
        segmenter.segment()
    multi = Segmenter("student_rgb_thermal_events", backend="torch", cache_dir=cache_dir)
    with pytest.raises(SegmenterInputError, match=r"events must be an EventWindow or a \(5, H, W\)"):
        multi.segment(events=np.zeros((3, 10, 10), np.float32))
    with pytest.raises(SegmenterInputError, match="thermal must be a .*uint16"):
        multi.segment(thermal=np.zeros((10, 10), np.uint8))


def test_int8_quantises_once_and_stays_close(frames, tmp_path):
    calls = []

    def source():
        calls.append(1)
        return iter(frames)

    calibration = Calibration("test-frames", source)
    fp32 = Segmenter("student_rgb", backend="onnxruntime", cache_dir=tmp_path)
    int8 = Segmenter("student_rgb", backend="onnxruntime", precision="int8", calibration=calibration, cache_dir=tmp_path)
    again = Segmenter("student_rgb", backend="onnxruntime", precision="int8", calibration=calibration, cache_dir=tmp_path)
    assert len(calls) == 1 and again.engine.path == int8.engine.path
    agreement = np.mean([(fp32.segment(f["rgb"]).labels == int8.segment(f["rgb"]).labels).mean() for f in frames])
    assert agreement > 0.9
    with pytest.raises(EngineError, match="int8 with onnxruntime needs calibration frames"):
        Segmenter("student_rgb", backend="onnxruntime", precision="int8", cache_dir=tmp_path / "other")


def test_letterboxed_segmentation_covers_the_frame(frames, cache_dir):
    segmenter = Segmenter("student_rgb", backend="onnxruntime", fit="letterbox", cache_dir=cache_dir)
    rgb = np.ascontiguousarray(frames[0]["rgb"][:, :240])  # 4:3 crop
    result = segmenter.segment(rgb)
    assert result.labels.shape == (180, 240) and result.confidence.min() > 0


# --- GPU paths: run only where they can -----------------------------------------------------------

def _gpu_or_skip(backend):
    reason = BACKENDS[backend].unavailable("cuda")
    if reason is not None:
        pytest.skip(f"{backend} on CUDA is not available here: {reason}")


@pytest.mark.parametrize(("backend", "precision"), [("torch", "fp16"), ("onnxruntime", "fp32"), ("tensorrt", "fp32"),
                                                    ("tensorrt", "fp16")])
def test_gpu_backends_agree_with_cpu(backend, precision, frames, cache_dir):
    _gpu_or_skip(backend)
    reference = Segmenter("student_rgb_thermal_events", backend="torch", device="cpu", cache_dir=cache_dir)
    gpu = Segmenter("student_rgb_thermal_events", backend=backend, device="cuda", precision=precision,
                    cache_dir=cache_dir)
    agreement = np.mean([(reference.segment(**f).labels == gpu.segment(**f).labels).mean() for f in frames])
    assert agreement >= (0.999 if precision == "fp32" else 0.99)


def test_int8_without_frames_says_so(tmp_path):
    empty = Calibration("empty", lambda: iter(()))
    with pytest.raises(EngineError, match="INT8 calibration got no frames"):
        Segmenter("student_rgb", backend="onnxruntime", precision="int8", calibration=empty, cache_dir=tmp_path)
