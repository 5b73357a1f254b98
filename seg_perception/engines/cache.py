"""A cache of built artefacts (ONNX exports, quantised models, TensorRT plans) keyed by what they depend on.

Each artefact `<kind>/<key><suffix>` has a sidecar `<key><suffix>.json` recording the fields its key
was made from and the artefact's SHA-256. An artefact is used only if the sidecar exists, its
fields equal the requested ones and the checksum matches; otherwise it is rebuilt — or, with
rebuilding disabled, refused with an error that says what differs. Builds are atomic (written
aside, then renamed) and serialised by a lock file, so two nodes starting together build once.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import EngineError

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """$SEG_PERCEPTION_CACHE, else $XDG_CACHE_HOME/seg_perception, else ~/.cache/seg_perception."""
    if os.environ.get("SEG_PERCEPTION_CACHE"):
        return Path(os.environ["SEG_PERCEPTION_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seg_perception"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(fields: Mapping[str, Any]) -> str:
    """A short stable key: SHA-256 of the fields as canonical JSON."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:24]


def artifact_problem(path: Path, fields: Mapping[str, Any]) -> str | None:
    """Why the artefact at `path` cannot stand for `fields` (None when it can)."""
    sidecar = _sidecar(path)
    if not path.is_file():
        return "it does not exist"
    if not sidecar.is_file():
        return f"its metadata file {sidecar.name} is missing"
    try:
        recorded = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        return f"its metadata file {sidecar.name} is unreadable ({exc})"
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fields"), dict):
        return f"its metadata file {sidecar.name} is malformed (a JSON object with 'fields' and 'sha256' expected)"
    wanted = json.loads(json.dumps(dict(fields), sort_keys=True, default=str))
    differs = {k: (recorded["fields"].get(k), v) for k, v in wanted.items() if recorded["fields"].get(k) != v}
    if differs:
        detail = "; ".join(f"{k}: built for {old!r}, need {new!r}" for k, (old, new) in sorted(differs.items()))
        return f"it was built for something else ({detail})"
    if recorded.get("sha256") != file_sha256(path):
        return "its content does not match its recorded checksum (corrupt or truncated)"
    return None


def write_sidecar(path: Path, fields: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> None:
    """Record `fields` and the checksum of `path` next to it."""
    document = {"fields": dict(fields), "sha256": file_sha256(path), **(extra or {})}
    write_atomically(_sidecar(path), json.dumps(document, indent=2, sort_keys=True, default=str).encode())


class ArtifactCache:
    """Artefacts under `root` (default `default_cache_dir()`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path_for(self, kind: str, fields: Mapping[str, Any], suffix: str) -> Path:
        return self.root / kind / f"{cache_key(fields)}{suffix}"

    def get_or_build(self, kind: str, fields: Mapping[str, Any], suffix: str, build: Callable[[Path], None], *,
                     rebuild: bool = True, validate: Callable[[Path], None] | None = None) -> Path:
        """The cached artefact for `fields` (file `<kind>/<key><suffix>`), built when missing or unusable;
        see `get_or_build_at`."""
        return get_or_build_at(self.path_for(kind, fields, suffix), fields, build, rebuild=rebuild, validate=validate)


def get_or_build_at(path: Path, fields: Mapping[str, Any], build: Callable[[Path], None], *, rebuild: bool = True,
                    validate: Callable[[Path], None] | None = None) -> Path:
    """The artefact at `path` if it was built for `fields` and is intact, else a new one from `build`.

    Args:
        fields: everything the artefact depends on (recorded in its sidecar and compared).
        build: writes the artefact to the path it is given (a temporary file beside `path`).
        rebuild: rebuild an artefact that is present but unusable; if False, raise instead.
        validate: extra check of an existing artefact (raise EngineError when unusable), e.g. deserialising.

    Raises:
        EngineError: the artefact is unusable and `rebuild` is False, or the build failed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock")):
        problem = artifact_problem(path, fields)
        if problem is None and validate is not None:
            try:
                validate(path)
            except EngineError as exc:
                problem = str(exc)
        if problem is None:
            return path
        if path.exists():
            if not rebuild:
                raise EngineError(f"{path} is unusable: {problem}. Rebuilding is disabled; delete the file or allow "
                                  f"rebuilding (rebuild=True, --rebuild)")
            log.warning("rebuilding %s: %s", path, problem)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=path.suffix)
        os.close(handle)
        try:
            build(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        write_sidecar(path, fields)
        return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_atomically(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` via a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
