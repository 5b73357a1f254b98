"""Where a split's images and labels are, in the layouts users have them (auto-detected), without moving files.

Layouts:

- "cityscapes": `<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` with
  `<root>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png`;
- "generic": `<root>/<split>/images/*` with `<root>/<split>/labels/*.png`, paired by file stem, and
  optionally `<root>/<split>/thermal/*.png` paired the same way;
- "segnet" (SegNet's CamVid): `<root>/<split>/*` with `<root>/<split>annot/*.png`, paired by stem;
- "yaml": `root` is a dataset YAML file naming each split's image and label folders or globs and
  how their names pair (format in docs/datasets.md).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LAYOUTS = ("auto", "cityscapes", "generic", "segnet", "yaml")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_SUFFIXES = (".png",)
CITYSCAPES_IMAGE = "_leftImg8bit.png"
CITYSCAPES_LABEL = "_gtFine_labelIds.png"
SEGNET_LABELS = "annot"  # CamVid as SegNet ships it: train/ + trainannot/
YAML_SUFFIXES = (".yaml", ".yml")
YAML_SPLIT_KEYS = ("images", "labels", "image_suffix", "label_suffix", "label_set", "label_map")
GLOB_CHARACTERS = "*?["
# How many offending file names an error message lists before it says "and N more".
SHOWN = 5


class FolderDatasetError(ValueError):
    """A dataset folder, label image or label map that cannot be used, and why."""


@dataclass(frozen=True)
class SamplePaths:
    """The files of one sample."""

    image: Path
    label: Path
    thermal: Path | None = None


@dataclass(frozen=True)
class SplitFiles:
    """A split's samples, in name order, and what its dataset YAML says the labels are (None: not said)."""

    layout: str
    samples: list[SamplePaths]
    label_set: str | None = None
    label_map: str | None = None


def find_split(root: str | os.PathLike, split: str, layout: str = "auto") -> SplitFiles:
    """The samples of `split` under `root` (a folder, or a dataset YAML file).

    Every image must have a label (and a thermal image, where a thermal folder exists) and every
    label an image.

    Raises:
        FolderDatasetError: an unknown layout, no layout found, a missing split or folder, unmatched
            files, files sharing a name, no images, or a malformed dataset YAML.
    """
    if layout not in LAYOUTS:
        raise FolderDatasetError(f"layout {layout!r} is not supported; supported: {', '.join(LAYOUTS)}")
    root = Path(root)
    if not root.exists():
        raise FolderDatasetError(f"dataset root {root} is not a folder nor a dataset YAML file")
    layout = detect_layout(root, split) if layout == "auto" else layout
    if layout == "yaml":
        return _yaml_split(root, split)
    if not root.is_dir():
        raise FolderDatasetError(f"dataset root {root} is not a folder")
    if layout == "cityscapes":
        images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        _require_split(images_dir, "Cityscapes image", root)
        _require_folder(labels_dir, "Cityscapes label")
        images = _keyed(sorted(images_dir.glob(f"*/*{CITYSCAPES_IMAGE}")), CITYSCAPES_IMAGE)
        labels = _keyed(sorted(labels_dir.glob(f"*/*{CITYSCAPES_LABEL}")), CITYSCAPES_LABEL)
        return SplitFiles(layout, _pairs(root, images, labels, f"*{CITYSCAPES_LABEL} label",
                                         f"*{CITYSCAPES_IMAGE} image"))
    if layout == "generic":
        base = root / split
        _require_split(base / "images", "image", root)
        _require_folder(base / "labels", "label")
        thermal = base / "thermal"
        return SplitFiles(layout, _folder_pairs(root, base / "images", base / "labels",
                                                thermal if thermal.is_dir() else None))
    _require_split(root / split, "SegNet image", root)
    _require_folder(root / f"{split}{SEGNET_LABELS}", "SegNet label")
    return SplitFiles(layout, _folder_pairs(root, root / split, root / f"{split}{SEGNET_LABELS}"))


def detect_layout(root: Path, split: str) -> str:
    """The layout of `root` for `split`: a YAML file, else the first of Cityscapes, generic, SegNet found.

    Raises:
        FolderDatasetError: no layout found; the message names what was looked for and the splits there are.
    """
    if root.is_file() and root.suffix.lower() in YAML_SUFFIXES:
        return "yaml"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if (root / split / "images").is_dir():
        return "generic"
    if (root / split).is_dir() and (root / f"{split}{SEGNET_LABELS}").is_dir():
        return "segnet"
    raise FolderDatasetError(
        f"no dataset layout found under {root} for split {split!r}: expected {root / 'leftImg8bit' / split} "
        f"(Cityscapes), {root / split / 'images'} with {root / split / 'labels'} (generic), {root / split} with "
        f"{root / (split + SEGNET_LABELS)} (SegNet/CamVid), or a dataset YAML file; splits found: "
        f"{', '.join(available_splits(root)) or 'none'}")


def available_splits(root: Path) -> list[str]:
    """Split names present under a dataset folder, in any folder layout."""
    if not root.is_dir():
        return []
    found = {p.name for p in (root / "leftImg8bit").glob("*") if p.is_dir()}
    for folder in root.iterdir():
        if folder.is_dir() and ((folder / "images").is_dir() or (root / f"{folder.name}{SEGNET_LABELS}").is_dir()):
            found.add(folder.name)
    return sorted(found)


def _yaml_split(path: Path, split: str) -> SplitFiles:
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as exc:
        raise FolderDatasetError(f"cannot read dataset YAML {path}: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("splits"), Mapping) or not data["splits"]:
        raise FolderDatasetError(f"dataset YAML {path} must hold `splits`: split name → {{images, labels}} "
                                 f"(see docs/datasets.md)")
    splits = data["splits"]
    if split not in splits:
        raise FolderDatasetError(f"dataset YAML {path} has no split {split!r}; splits: {', '.join(map(str, splits))}")
    entry = splits[split]
    if not isinstance(entry, Mapping) or not {"images", "labels"} <= entry.keys() or entry.keys() - set(YAML_SPLIT_KEYS):
        raise FolderDatasetError(f"dataset YAML {path}, split {split!r}: expected the keys images and labels, "
                                 f"optionally {', '.join(YAML_SPLIT_KEYS[2:])}; got {sorted(map(str, entry or {}))}")
    base = path.parent / str(data.get("root", "."))
    images = _keyed(_listed(base, entry["images"], IMAGE_SUFFIXES, path), _text(entry, "image_suffix", path))
    labels = _keyed(_listed(base, entry["labels"], LABEL_SUFFIXES, path), _text(entry, "label_suffix", path))
    samples = _pairs(base, images, labels, "label", "image")
    return SplitFiles("yaml", samples, _text(entry, "label_set", path) or _text(data, "label_set", path),
                      _text(entry, "label_map", path) or _text(data, "label_map", path))


def _text(data: Mapping[str, Any], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise FolderDatasetError(f"dataset YAML {path}: {key} must be a string, got {value!r}")
    return value


def _listed(base: Path, where: object, suffixes: tuple[str, ...], path: Path) -> list[Path]:
    """The files of a folder (those with `suffixes`) or of a glob pattern, relative to `base`."""
    if not isinstance(where, str) or not where:
        raise FolderDatasetError(f"dataset YAML {path}: images and labels must be a folder or a glob, got {where!r}")
    if any(c in where for c in GLOB_CHARACTERS):
        return sorted(p for p in base.glob(where) if p.is_file())
    _require_folder(base / where, "dataset")
    return _files(base / where, suffixes)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _folder_pairs(root: Path, images: Path, labels: Path, thermal: Path | None = None) -> list[SamplePaths]:
    """Samples of an image folder and a label folder (and a thermal one) paired by file stem."""
    by_stem = _keyed(_files(images, IMAGE_SUFFIXES), None)
    pairs = _pairs(root, by_stem, _keyed(_files(labels, LABEL_SUFFIXES), None), "label", "image")
    if thermal is None:
        return pairs
    counts = _keyed(_files(thermal, LABEL_SUFFIXES), None)
    _pairs(root, by_stem, counts, "thermal image", "image")
    return [SamplePaths(p.image, p.label, counts[p.image.stem]) for p in pairs]


def _keyed(paths: list[Path], suffix: str | None) -> dict[str, Path]:
    """Files by pairing key: the name without `suffix` (files without it are not samples), or the stem."""
    found: dict[str, Path] = {}
    for path in paths:
        if suffix is not None and not path.name.endswith(suffix):
            continue
        key = path.name[:-len(suffix)] if suffix else path.stem
        if key in found:
            raise FolderDatasetError(f"{found[key]} and {path} pair under the same name {key!r}; keep one file per "
                                     f"sample")
        found[key] = path
    return found


def _pairs(root: Path, images: dict[str, Path], others: dict[str, Path], other: str, image: str) -> list[SamplePaths]:
    if not images:
        raise FolderDatasetError(f"no images found under {root} (expected {image} files)")
    lonely = [images[k] for k in images.keys() - others.keys()]
    if lonely:
        raise FolderDatasetError(f"{len(lonely)} images have no {other}: {_listing(lonely, root)}")
    orphans = [others[k] for k in others.keys() - images.keys()]
    if orphans:
        raise FolderDatasetError(f"{len(orphans)} {other} files have no {image}: {_listing(orphans, root)}")
    return [SamplePaths(images[key], others[key]) for key in sorted(images)]


def _require_split(path: Path, what: str, root: Path) -> None:
    if not path.is_dir():
        raise FolderDatasetError(f"missing {what} folder {path}; splits found: {', '.join(available_splits(root)) or 'none'}")


def _require_folder(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FolderDatasetError(f"missing {what} folder {path}")


def _listing(paths: list[Path], root: Path) -> str:
    names = sorted(os.path.relpath(p, root) for p in paths)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more
