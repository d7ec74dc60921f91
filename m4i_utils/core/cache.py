"""Artifact cache: expensive results stored under a key that hashes everything that affects them.

An artifact is a folder ``<cache_dir>/<kind>/<key>/`` holding the files its builder wrote plus
``manifest.json`` (kind, parameters, upstream keys, code version, creation time, file sha256s). The key
hashes the parameters, the upstream artifacts' keys and the source code of the modules that build it, so a
changed parameter or changed code never reuses a stale artifact. Builders write into a temporary folder that
is renamed into place only when complete; a folder whose files do not match its manifest is rebuilt.

Stale temporary folders: a build that is killed (SIGKILL, power loss) leaves its ``<kind>/.tmp-<key>-<id>/``
behind. Each time :func:`cached` builds an artifact of a kind it removes that kind's ``.tmp-*`` folders that
are stale: nothing in them (the folder or a file directly in it) was modified for :data:`STALE_TMP_SECONDS`
(6 hours), AND no process holds the folder's lock. A build holds an exclusive ``flock`` on its own
temporary folder until it is renamed into place, so a build in progress, however long, is never removed on
a local file system; the age limit protects builds on file systems without ``flock`` (the lock is released
by the kernel when the building process dies).
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
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: the age limit alone protects builds
    fcntl = None  # type: ignore[assignment]

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 6 * 3600
CHECKPOINT_PREFIX = ".ckpt-"


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


def _lock(folder: Path) -> int | None:
    """Open ``folder`` and take an exclusive non-blocking ``flock`` on it; the fd, or None if it is held.

    Without ``fcntl`` (not POSIX) the folder is opened and "locked" unconditionally.
    """
    fd = os.open(folder, os.O_RDONLY)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _newest_mtime(folder: Path) -> float:
    """The latest mtime of ``folder`` and the entries directly in it."""
    newest = folder.stat().st_mtime
    for p in folder.iterdir():
        with suppress(OSError):
            newest = max(newest, p.lstat().st_mtime)
    return newest


def remove_stale_tmp(kind_dir: str | Path, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove the ``.tmp-*`` folders of killed builds in ``kind_dir`` (one kind of the cache).

    A folder is removed only when it and every entry directly in it are older than ``max_age`` seconds (by
    mtime) and no process holds its ``flock`` (every build in progress does). Errors (a folder removed by a
    concurrent cleaner, permissions) are ignored: cleaning is best effort.

    Returns:
        The folders removed.
    """
    kind_dir = Path(kind_dir)
    if not kind_dir.is_dir():
        return []
    removed = []
    now = time.time()
    for tmp in kind_dir.iterdir():
        if not tmp.name.startswith(TMP_PREFIX) or tmp.is_symlink() or not tmp.is_dir():
            continue
        try:
            if now - _newest_mtime(tmp) < max_age:
                continue
            fd = _lock(tmp)
        except OSError:
            continue
        if fd is None:  # a build in progress holds it
            continue
        try:
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            os.close(fd)
        if not tmp.exists():
            removed.append(tmp)
    if removed:
        tqdm.write(
            f"cache: removed {len(removed)} stale {TMP_PREFIX}* folders of killed builds in {kind_dir}"
        )
    return removed


def checkpoint_dir(cache_dir: str | Path, kind: str, key: str) -> Path:
    """Stable folder for the training checkpoints of the artifact ``<kind>/<key>`` while it is being built.

    ``<cache_dir>/<kind>/.ckpt-<key>/``: unlike the build's temporary folder its name does not change between
    attempts, so a build killed mid-training resumes from its last checkpoint when started again (see
    :func:`m4i_utils.models.training.fit`). The key hashes the parameters and the code, so a checkpoint is
    only ever resumed by the same code with the same parameters. :func:`cached` hands it to builders that
    take a second argument (it is not created: the training loop creates it when it writes a checkpoint) and
    removes it once the artifact is complete; it is kept when a build fails. It is not a ``.tmp-*`` folder, so
    stale-folder cleaning leaves it alone.
    """
    return Path(cache_dir) / kind / f"{CHECKPOINT_PREFIX}{key}"


def _takes_checkpoints(build: Callable[..., None]) -> bool:
    """Whether a builder accepts a second positional argument (its checkpoint folder)."""
    try:
        params = list(inspect.signature(build).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params) or (
        sum(p.kind in positional for p in params) >= 2
    )


def cached(
    cache_dir: str | Path,
    kind: str,
    params: dict[str, Any],
    build: Callable[..., None],
    upstream: Iterable[str] = (),
    code_modules: Iterable[str] = (),
) -> Artifact:
    """Return the cached artifact for ``(kind, params, upstream, code)``, building it if absent or corrupt.

    Args:
        cache_dir: root of the cache.
        kind: artifact family, e.g. ``"synthetic_world"`` or ``"captioner"``.
        params: every parameter that affects the artifact (JSON-able).
        build: writes the artifact's files into the folder it is given (flat, no sub-folders). A builder
            with two parameters, ``build(out, checkpoints)``, also gets the artifact's stable checkpoint
            folder (:func:`checkpoint_dir`) for resumable training; it is removed once the artifact is
            complete.
        upstream: keys of the artifacts this one is derived from.
        code_modules: modules whose source code is hashed into the key (the builder's module is added).

    Before building, stale ``.tmp-*`` folders of the same kind (killed builds, see :func:`remove_stale_tmp`)
    are removed. The build's own temporary folder is locked (``flock``) while it is being built.

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
    remove_stale_tmp(Path(cache_dir) / kind)
    tmp = Path(cache_dir) / kind / f"{TMP_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        lock = _lock(tmp)
    except OSError:  # a file system that cannot open folders: the age limit alone protects this build
        lock = None
    try:
        start = time.time()
        ckpt = checkpoint_dir(cache_dir, kind, key)
        build(tmp, ckpt) if _takes_checkpoints(build) else build(tmp)
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
    finally:
        if lock is not None:
            os.close(lock)
    shutil.rmtree(ckpt, ignore_errors=True)
    return Artifact(final, key, manifest, rebuilt=True)
