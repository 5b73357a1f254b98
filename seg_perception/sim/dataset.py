"""A PyTorch Dataset of aligned RGB, thermal, event and label samples rendered from the synthetic world."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

import seg_perception
from seg_perception.io.encoding import EVENT_WINDOW_NS, EventWindow, encode_thermal
from seg_perception.labels import load_label_set

from .events import EventSensorConfig, EventSimulator
from .rig import CameraSpec, RigSpec
from .scenarios import SCENARIOS
from .scene import KINDS
from .world import World

# Scene seeds of each split: disjoint half-open ranges, so no scene is ever both trained and tested on.
SPLIT_SEEDS: dict[str, tuple[int, int]] = {
    "train": (0, 100_000),
    "val": (100_000, 110_000),
    "test": (110_000, 120_000),
}
MODALITIES = ("rgb", "thermal", "events")
# Bump when the meaning of a cached file changes; old files are then simply never looked up again.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class SimDatasetConfig:
    """What a split renders; every field is part of the cache key.

    Attributes:
        samples: number of samples in the split (`len(dataset)`).
        samples_per_scene: consecutive indices that share one scene (seed) and scenario; building
            a World costs far more than rendering one of its frames.
        width: training image width; every modality is rendered at this size, pixel-aligned.
        height: training image height.
        scenarios: (name, weight) pairs; each scene draws its scenario with these weights.
        kind: "offroad" or "semiurban" for every scene; None alternates with the seed (World's default).
        modalities: inputs to render, a subset of ("rgb", "thermal", "events"); labels always come.
        event_window_s: the event tensor covers the events of this long a window ending at the frame time.
        event_bins: temporal bins of the event voxel grid.
        event_substeps: renders of the event camera across the window (plus one at its start); the
            default 4 puts them at the centres of the default 5 bins (every 12.5 ms).
        event_config: the event sensor.
    """

    samples: int = 1000
    samples_per_scene: int = 8
    width: int = 320
    height: int = 180
    scenarios: tuple[tuple[str, float], ...] = (("day", 0.4), ("dusk", 0.2), ("night", 0.25), ("fog", 0.15))
    kind: str | None = None
    modalities: tuple[str, ...] = MODALITIES
    event_window_s: float = EVENT_WINDOW_NS / 1e9
    event_bins: int = 5
    event_substeps: int = 4
    event_config: EventSensorConfig = field(default_factory=EventSensorConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.samples < 0 or self.samples_per_scene < 1:
            problems.append(f"need samples >= 0 and samples_per_scene >= 1, got {self.samples}, "
                            f"{self.samples_per_scene}")
        if self.width < 1 or self.height < 1:
            problems.append(f"image size must be positive, got {self.width}x{self.height}")
        names = [name for name, _ in self.scenarios]
        if not names or any(name not in SCENARIOS for name in names) or any(w < 0 for _, w in self.scenarios) \
                or sum(w for _, w in self.scenarios) <= 0:
            problems.append(f"scenarios must be (name, weight >= 0) pairs with names in {', '.join(SCENARIOS)} "
                            f"and a positive total weight, got {self.scenarios}")
        if self.kind is not None and self.kind not in KINDS:
            problems.append(f"kind must be None or one of {', '.join(KINDS)}, got {self.kind!r}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or len(set(self.modalities)) != len(self.modalities):
            problems.append(f"modalities must be distinct names from {', '.join(MODALITIES)}, got {self.modalities}")
        if not (self.event_window_s > 0 and self.event_bins >= 1 and self.event_substeps >= 1):
            problems.append(f"need event_window_s > 0, event_bins >= 1 and event_substeps >= 1, got "
                            f"{self.event_window_s}, {self.event_bins}, {self.event_substeps}")
        if problems:
            raise ValueError("invalid SimDatasetConfig: " + "; ".join(problems))

    def rig(self) -> RigSpec:
        """The rig that renders every modality at the training size, so all of them align pixel for pixel."""
        return RigSpec(camera=CameraSpec(width=self.width, height=self.height), thermal_scale=1.0, event_scale=1.0)


@dataclass(frozen=True)
class SamplePlan:
    """Where sample `index` of a split comes from (before anything is rendered)."""

    index: int
    seed: int
    scenario: str
    within: int  # position among the scene's samples

    def stream(self, purpose: int) -> np.random.SeedSequence:
        """An independent random stream of this sample: 0 its time, 1 sensor noise, 2 the event sensor."""
        return np.random.SeedSequence([self.seed, 2, self.within, purpose])


def plan_sample(split: str, index: int, config: SimDatasetConfig) -> SamplePlan:
    """Scene seed, scenario and random streams of sample `index` of `split`.

    Args:
        split: "train", "val" or "test".
        index: sample index, 0 <= index < config.samples.
        config: the split's configuration.

    Returns:
        The plan: scene `seed = start(split) + index // samples_per_scene`; the scenario is drawn per
        scene with the configured weights; the rest is seeded by (seed, index within the scene).

    Raises:
        ValueError: unknown split, or more scenes than the split's seed range holds.
        IndexError: `index` is out of range.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split {split!r} is not supported; supported: {', '.join(SPLIT_SEEDS)}")
    if not 0 <= index < config.samples:
        raise IndexError(f"sample index {index} is out of range for a split of {config.samples} samples")
    start, end = SPLIT_SEEDS[split]
    scene, within = divmod(index, config.samples_per_scene)
    seed = start + scene
    if seed >= end:
        raise ValueError(f"sample {index} needs scene seed {seed}, beyond the {split!r} seed range [{start}, {end}); "
                         f"use fewer samples or more samples_per_scene")
    names = [name for name, _ in config.scenarios]
    weights = np.array([w for _, w in config.scenarios], np.float64)
    scenario = names[np.random.default_rng([seed, 1]).choice(len(names), p=weights / weights.sum())]
    return SamplePlan(index, seed, scenario, within)


class SimDataset(Dataset):
    """Aligned multi-modal training samples from the synthetic world, deterministic per (split, index, config).

    Each sample is a dict:

    - "rgb": float32 (3, H, W) in [0, 1] (rgb8 / 255);
    - "thermal": float32 (1, H, W), `(kelvin - 273.15 - 20) / 20` from the radiometric counts (kelvin × 100);
    - "events": float32 (bins, H, W), the voxel grid (`events_to_voxel_grid`, normalised to a robust
      scale) of the events in the `event_window_s` ending at the frame time, from an event sensor reset
      at the window's start — so each sample is independent of every other;
    - "labels": int64 (H, W) class ids (label set "sim_offroad");
    - metadata: "index", "seed" (scene), "scenario", "kind", "time_s" (seconds into the drive).

    Inputs not in `config.modalities` are absent and not rendered. Scenes are shared by
    `samples_per_scene` consecutive indices and kept in a small LRU per process (each DataLoader
    worker has its own), so read a split in order or with `SceneBlockSampler`; fully random access
    rebuilds a World (about 0.5 s) per sample unless the sample is cached.

    Args:
        split: "train" (scene seeds [0, 100000)), "val" ([100000, 110000)) or "test" ([110000, 120000)).
        config: what to render; default `SimDatasetConfig()`.
        cache_dir: if given, each sample is stored there as a compressed .npz named by a hash of
            (config, split, index, package version), written atomically so that DataLoader workers may
            share the folder, and read back instead of rendering. Clear the folder after changing the
            simulator itself.
        worlds_kept: how many Worlds the LRU keeps.

    Raises:
        ValueError: unknown split, or a config whose samples do not fit the split's seed range.
    """

    def __init__(self, split: str = "train", config: SimDatasetConfig | None = None, *,
                 cache_dir: str | os.PathLike | None = None, worlds_kept: int = 2) -> None:
        self.split = split
        self.config = config or SimDatasetConfig()
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split {split!r} is not supported; supported: {', '.join(SPLIT_SEEDS)}")
        start, end = SPLIT_SEEDS[split]
        scenes = -(-self.config.samples // self.config.samples_per_scene)
        if scenes > end - start:
            raise ValueError(f"{self.config.samples} samples at {self.config.samples_per_scene} per scene need "
                             f"{scenes} scenes; the {split!r} split has {end - start}")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.worlds_kept = max(1, int(worlds_kept))
        self._worlds: OrderedDict[tuple[int, str], World] = OrderedDict()
        self._config_key = json.dumps({"format": CACHE_FORMAT, "version": seg_perception.__version__,
                                       "config": asdict(self.config), "split": split}, sort_keys=True)

    def __len__(self) -> int:
        return self.config.samples

    def __getstate__(self) -> dict[str, Any]:
        # Worlds are large and rebuilt on demand; do not ship them to DataLoader worker processes.
        state = self.__dict__.copy()
        state["_worlds"] = OrderedDict()
        return state

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} is out of range for a split of {len(self)} samples")
        return _to_sample(self.raw(index), index)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        """Sample `index` as raw arrays (see `render`), from the cache when there is one."""
        path = self.cache_path(index)
        raw = _load(path) if path is not None else None
        if raw is None:
            raw = self.render(index)
            if path is not None:
                _save(path, raw)
        return raw

    def cache_path(self, index: int) -> Path | None:
        """The cache file of sample `index`, or None without a cache."""
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{self._config_key}/{index}".encode()).hexdigest()[:20]
        return self.cache_dir / f"{self.split}-{index:07d}-{digest}.npz"

    def world(self, seed: int, scenario: str) -> World:
        """The World of a scene, from the LRU or built."""
        key = (seed, scenario)
        world = self._worlds.get(key)
        if world is None:
            world = World(seed, scenario, kind=self.config.kind, rig=self.config.rig(),
                          event_config=self.config.event_config)
            self._worlds[key] = world
            while len(self._worlds) > self.worlds_kept:
                self._worlds.popitem(last=False)
        else:
            self._worlds.move_to_end(key)
        return world

    def render(self, index: int) -> dict[str, np.ndarray]:
        """Sample `index` as raw arrays (what the cache stores): rgb (H, W, 3) uint8, thermal (H, W)
        uint16 counts, events (bins, H, W) float32, labels (H, W) uint8 and the metadata as 0-d arrays."""
        config = self.config
        plan = plan_sample(self.split, index, config)
        world = self.world(plan.seed, plan.scenario)
        time_rng = np.random.default_rng(plan.stream(0))
        time_s = float(time_rng.uniform(config.event_window_s, world.trajectory.duration_s))
        rgb, thermal, _, labels = world.render_camera(time_s, np.random.default_rng(plan.stream(1)))
        raw = {"labels": labels, "seed": np.array(plan.seed), "scenario": np.array(plan.scenario),
               "kind": np.array(world.scene.kind), "time_s": np.array(time_s)}
        if "rgb" in config.modalities:
            raw["rgb"] = rgb
        if "thermal" in config.modalities:
            raw["thermal"] = thermal
        if "events" in config.modalities:
            raw["events"] = self._event_grid(world, time_s, plan.stream(2))
        return raw

    def _event_grid(self, world: World, time_s: float, stream: np.random.SeedSequence) -> np.ndarray:
        config = self.config
        width, height = world.models.event.image_size
        start_s = time_s - config.event_window_s
        # A fresh sensor per sample (its own mismatch map and noise), reset at the window's start.
        simulator = EventSimulator(width, height, config.event_config, seed=int(stream.generate_state(1)[0]))
        simulator.reset(world.event_log_intensity(start_s), world.stamp_of(start_s))
        times = start_s + config.event_window_s * np.arange(1, config.event_substeps + 1) / config.event_substeps
        logs = np.stack([world.event_log_intensity(t) for t in times])
        events = simulator.step(logs, np.array([world.stamp_of(t) for t in times], np.int64))
        window = EventWindow(events, width, height, world.stamp_of(start_s), world.stamp_of(time_s))
        return window.voxel_grid(config.event_bins)


class SceneBlockSampler(Sampler[int]):
    """Shuffles a SimDataset by whole scenes: scenes in random order, each scene's samples together
    (in random order), so that the World LRU hits. Call `set_epoch` for a new order each epoch.

    With DataLoader workers, a batch goes to one worker: batch sizes that divide `samples_per_scene`
    keep each worker on few scenes.
    """

    def __init__(self, dataset: SimDataset, seed: int = 0) -> None:
        self.samples = len(dataset)
        self.per_scene = dataset.config.samples_per_scene
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        scenes = -(-self.samples // self.per_scene)
        for scene in rng.permutation(scenes):
            block = np.arange(scene * self.per_scene, min((scene + 1) * self.per_scene, self.samples))
            yield from (int(i) for i in rng.permutation(block))


def class_frequencies(split: str, config: SimDatasetConfig | None = None, *, max_samples: int | None = None,
                      num_classes: int | None = None) -> np.ndarray:
    """Fraction of labelled pixels per class over a split (for class weighting); renders labels only.

    Args:
        split: "train", "val" or "test".
        config: the split's configuration (its modalities are ignored).
        max_samples: use this many samples spread evenly over the split; default all.
        num_classes: length of the result; default that of the "sim_offroad" label set.

    Returns:
        (num_classes,) float64 summing to 1 (all zeros for an empty split).
    """
    dataset = SimDataset(split, replace(config or SimDatasetConfig(), modalities=()))
    classes = num_classes if num_classes is not None else load_label_set("sim_offroad").num_classes
    count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    counts = np.zeros(classes, np.int64)
    # Evenly spaced indices, visited in increasing order so that each scene's World is built once.
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)) if count else []
    for index in indices:
        counts += np.bincount(dataset.render(int(index))["labels"].ravel(), minlength=classes)[:classes]
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def calibration_frames(count: int, config: SimDatasetConfig | None = None, *,
                       cache_dir: str | Path | None = None) -> Iterator[dict[str, np.ndarray]]:
    """`count` frames of the validation split, one per scene, as a Segmenter takes them: rgb (H, W, 3)
    uint8, thermal (H, W) uint16 counts, events (bins, H, W) voxel grid (for INT8 calibration)."""
    config = config or SimDatasetConfig()
    dataset = SimDataset("val", replace(config, samples=count * config.samples_per_scene), cache_dir=cache_dir)
    for index in range(0, len(dataset), config.samples_per_scene):
        raw = dataset.raw(index)
        yield {m: raw[m] for m in MODALITIES if m in raw}


def _to_sample(raw: dict[str, np.ndarray], index: int) -> dict[str, Any]:
    """Raw arrays → the sample's tensors; the one conversion used for fresh and cached samples alike."""
    sample: dict[str, Any] = {"labels": torch.from_numpy(raw["labels"].astype(np.int64))}
    if "rgb" in raw:
        sample["rgb"] = torch.from_numpy(np.ascontiguousarray(raw["rgb"].transpose(2, 0, 1), np.float32) / 255.0)
    if "thermal" in raw:
        sample["thermal"] = torch.from_numpy(encode_thermal(raw["thermal"])[None])
    if "events" in raw:
        sample["events"] = torch.from_numpy(np.ascontiguousarray(raw["events"], np.float32))
    sample.update(index=index, seed=int(raw["seed"]), scenario=str(raw["scenario"]), kind=str(raw["kind"]),
                  time_s=float(raw["time_s"]))
    return sample


def _load(path: Path) -> dict[str, np.ndarray] | None:
    """A cached sample, or None when it is missing or unreadable (then it is rendered and rewritten)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _save(path: Path, raw: dict[str, np.ndarray]) -> None:
    """Write atomically: a temporary file in the same folder, then rename over the final name, so a
    reader (another worker) sees either no file or a complete one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez_compressed(out, **raw)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
