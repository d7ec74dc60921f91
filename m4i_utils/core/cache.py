"""Artifact cache: expensive results stored under a key that hashes everything that affects them.

An artifact is a folder ``<cache_dir>/<kind>/<key>/`` holding the files its builder wrote plus
``manifest.json`` (kind, parameters, upstream keys, code version, creation time, file sha256s). The key
hashes the parameters, the upstream artifacts' keys and the source code of the modules that build it, so a
changed parameter or changed code never reuses a stale artifact. Builders write into a temporary folder that
is renamed into place only when complete; a folder whose files do not match its manifest is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    """A complete cached artifact: its folder, key and manifest."""

    path: Path
    key: str
    manifest: dict[str, Any]
    rebuilt: bool

    def file(self, name: str) -> Path:
        """Path of one file of the artifact (raises FileNotFoundError if the builder did not write it)."""
        p = self.path / name
        if not p.exists():
            raise FileNotFoundError(f"artifact {self.manifest['kind']}/{self.key} has no file {name!r}")
        return p


def code_version(modules: Iterable[str]) -> str:
    """Short sha256 over the source code of the given modules (e.g. ``["m4i_utils.data.synthetic"]``)."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(name.encode())
        h.update(inspect.getsource(importlib.import_module(name)).encode())
    return h.hexdigest()[:16]


def artifact_key(kind: str, params: dict[str, Any], upstream: Iterable[str] = (), code: str = "") -> str:
    """Deterministic 16-hex-digit key of (kind, params, upstream keys, code version)."""
    blob = json.dumps(
        {"kind": kind, "params": params, "upstream": sorted(upstream), "code": code},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_complete(path: Path) -> bool:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    present = {p.name for p in path.iterdir() if p.name != MANIFEST}
    if present != set(files):
        return False
    return all(_sha256(path / name) == digest for name, digest in files.items())


def cached(
    cache_dir: str | Path,
    kind: str,
    params: dict[str, Any],
    build: Callable[[Path], None],
    upstream: Iterable[str] = (),
    code_modules: Iterable[str] = (),
) -> Artifact:
    """Return the cached artifact for ``(kind, params, upstream, code)``, building it if absent or corrupt.

    Args:
        cache_dir: root of the cache.
        kind: artifact family, e.g. ``"synthetic_world"`` or ``"captioner"``.
        params: every parameter that affects the artifact (JSON-able).
        build: writes the artifact's files into the folder it is given (flat, no sub-folders).
        upstream: keys of the artifacts this one is derived from.
        code_modules: modules whose source code is hashed into the key (the builder's module is added).
    Returns:
        The complete :class:`Artifact`.
    """
    modules = set(code_modules) | {build.__module__}
    modules = {m for m in modules if m != "__main__" and not m.startswith("__")}
    code = code_version(modules)
    upstream = list(upstream)
    key = artifact_key(kind, params, upstream, code)
    final = Path(cache_dir) / kind / key
    if final.exists() and _is_complete(final):
        return Artifact(final, key, json.loads((final / MANIFEST).read_text()), rebuilt=False)
    if final.exists():
        tqdm.write(f"cache: {kind}/{key} is incomplete or corrupt; rebuilding")
        shutil.rmtree(final)
    tmp = Path(cache_dir) / kind / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        start = time.time()
        build(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        manifest = {
            "kind": kind,
            "key": key,
            "params": params,
            "upstream": upstream,
            "code_version": code,
            "code_modules": sorted(modules),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "build_seconds": round(time.time() - start, 3),
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same artifact first
            shutil.rmtree(tmp, ignore_errors=True)
            if not _is_complete(final):
                raise
            manifest = json.loads((final / MANIFEST).read_text())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Artifact(final, key, manifest, rebuilt=True)
