"""The artefact cache: keys, reuse, and what happens to stale, corrupt or foreign artefacts."""
from __future__ import annotations

import json

import pytest

from seg_perception.engines import ArtifactCache, EngineError, ModelSource, cache_key, engine_cache_fields
from seg_perception.engines.cache import default_cache_dir, get_or_build_at

BASE = dict(onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
            precision="fp16", input_shapes={"x": (1, 9, 180, 320), "present": (1, 3)})


@pytest.mark.parametrize(("field", "value"), [
    ("onnx_sha256", "b" * 64), ("tensorrt_version", "10.13.0"), ("gpu_name", "NVIDIA GeForce RTX 4090"),
    ("compute_capability", "8.9"), ("precision", "int8"), ("input_shapes", {"x": (1, 9, 360, 640), "present": (1, 3)}),
])
def test_every_engine_dependency_changes_the_key(field, value):
    assert cache_key(engine_cache_fields(**{**BASE, field: value})) != cache_key(engine_cache_fields(**BASE))


def test_key_is_stable_and_order_independent():
    fields = engine_cache_fields(**BASE)
    assert cache_key(fields) == cache_key(dict(reversed(list(fields.items()))))


class Builder:
    """A build function that writes a known payload and counts its calls."""

    def __init__(self, payload: bytes = b"engine-bytes") -> None:
        self.payload, self.calls = payload, 0

    def __call__(self, path):
        self.calls += 1
        path.write_bytes(self.payload)


def test_built_once_then_reused(tmp_path):
    cache, build = ArtifactCache(tmp_path), Builder()
    first = cache.get_or_build("tensorrt", engine_cache_fields(**BASE), ".plan", build)
    second = cache.get_or_build("tensorrt", engine_cache_fields(**BASE), ".plan", build)
    assert first == second and build.calls == 1 and first.read_bytes() == b"engine-bytes"
    sidecar = json.loads(first.with_name(first.name + ".json").read_text())
    assert sidecar["fields"]["gpu"] == "Orin" and len(sidecar["sha256"]) == 64
    other = cache.get_or_build("tensorrt", engine_cache_fields(**{**BASE, "precision": "fp32"}), ".plan", build)
    assert other != first and build.calls == 2


def test_corrupt_artefact_is_rebuilt_or_refused(tmp_path):
    cache, build = ArtifactCache(tmp_path), Builder()
    fields = engine_cache_fields(**BASE)
    path = cache.get_or_build("tensorrt", fields, ".plan", build)
    path.write_bytes(b"engine-by")  # truncated
    with pytest.raises(EngineError, match="corrupt or truncated.*Rebuilding is disabled"):
        cache.get_or_build("tensorrt", fields, ".plan", build, rebuild=False)
    assert build.calls == 1
    assert cache.get_or_build("tensorrt", fields, ".plan", build).read_bytes() == b"engine-bytes"
    assert build.calls == 2


def test_mismatched_plan_file_names_what_differs(tmp_path):
    plan, build = tmp_path / "deployed.plan", Builder()
    get_or_build_at(plan, engine_cache_fields(**BASE), build)
    upgraded = engine_cache_fields(**{**BASE, "tensorrt_version": "10.13.0"})
    with pytest.raises(EngineError, match="tensorrt: built for '10.3.0', need '10.13.0'"):
        get_or_build_at(plan, upgraded, build, rebuild=False)
    get_or_build_at(plan, upgraded, build)
    assert build.calls == 2
    assert json.loads((tmp_path / "deployed.plan.json").read_text())["fields"]["tensorrt"] == "10.13.0"


def test_missing_sidecar_and_failed_validation_rebuild(tmp_path):
    plan, build = tmp_path / "p.plan", Builder()
    plan.write_bytes(b"someone else's engine")
    with pytest.raises(EngineError, match="metadata file p.plan.json is missing"):
        get_or_build_at(plan, engine_cache_fields(**BASE), build, rebuild=False)
    get_or_build_at(plan, engine_cache_fields(**BASE), build)
    assert build.calls == 1

    def refuse(path):
        raise EngineError("cannot deserialize")

    get_or_build_at(plan, engine_cache_fields(**BASE), build, validate=refuse)
    assert build.calls == 2


def test_failed_build_leaves_nothing_behind(tmp_path):
    def fail(path):
        path.write_bytes(b"half")
        raise EngineError("builder ran out of memory")

    with pytest.raises(EngineError, match="out of memory"):
        get_or_build_at(tmp_path / "p.plan", engine_cache_fields(**BASE), fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.plan.lock"]


def test_corrupt_cached_onnx_export_is_re_exported(tmp_path):
    source, cache = ModelSource.open("student_rgb"), ArtifactCache(tmp_path)
    spec = source.spec(k=3)
    path = source.onnx(spec, cache)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(EngineError, match="corrupt"):
        source.onnx(spec, cache, rebuild=False)
    assert source.onnx(spec, cache) == path and len(path.read_bytes()) == len(good)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEG_PERCEPTION_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SEG_PERCEPTION_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "seg_perception"


@pytest.mark.parametrize("sidecar", ["[1, 2]", '"text"', '{"fields": [1], "sha256": "x"}', '{"sha256": "x"}', "{bad json"])
def test_malformed_sidecars_make_the_artefact_unusable(tmp_path, sidecar):
    plan, build = tmp_path / "p.plan", Builder()
    plan.write_bytes(b"an engine")
    plan.with_name("p.plan.json").write_text(sidecar)
    with pytest.raises(EngineError, match=r"metadata file p.plan.json is (malformed|unreadable)"):
        get_or_build_at(plan, engine_cache_fields(**BASE), build, rebuild=False)
    get_or_build_at(plan, engine_cache_fields(**BASE), build)
    assert build.calls == 1
