import json

import numpy as np
import pytest

from m4i_utils.core import cache


def _builder(calls):
    def build(out):
        calls.append(1)
        np.save(out / "x.npy", np.arange(5))

    return build


def test_cache_reuses_and_invalidates_on_parameter_change(tmp_path):
    calls = []
    a = cache.cached(tmp_path, "demo", {"n": 5}, _builder(calls))
    b = cache.cached(tmp_path, "demo", {"n": 5}, _builder(calls))
    assert a.key == b.key and len(calls) == 1 and not b.rebuilt
    c = cache.cached(tmp_path, "demo", {"n": 6}, _builder(calls))
    assert c.key != a.key and len(calls) == 2
    d = cache.cached(tmp_path, "demo", {"n": 5}, _builder(calls), upstream=["abc"])
    assert d.key != a.key


def test_manifest_records_parameters_and_hashes(tmp_path):
    art = cache.cached(tmp_path, "demo", {"n": 5}, _builder([]))
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert manifest["params"] == {"n": 5} and "x.npy" in manifest["files"] and manifest["code_version"]


def test_corrupt_artifact_is_rebuilt(tmp_path):
    calls = []
    art = cache.cached(tmp_path, "demo", {"n": 5}, _builder(calls))
    (art.path / "x.npy").write_bytes(b"garbage")
    again = cache.cached(tmp_path, "demo", {"n": 5}, _builder(calls))
    assert again.rebuilt and len(calls) == 2
    assert np.load(again.file("x.npy")).tolist() == [0, 1, 2, 3, 4]


def test_half_written_artifact_is_rebuilt(tmp_path):
    calls = []
    art = cache.cached(tmp_path, "demo", {"n": 5}, _builder(calls))
    (art.path / "manifest.json").unlink()
    assert cache.cached(tmp_path, "demo", {"n": 5}, _builder(calls)).rebuilt


def test_failed_build_leaves_nothing(tmp_path):
    def bad(out):
        (out / "partial.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.cached(tmp_path, "demo", {"n": 1}, bad)
    assert list((tmp_path / "demo").iterdir()) == []


def test_code_version_changes_key():
    assert cache.artifact_key("k", {}, [], "v1") != cache.artifact_key("k", {}, [], "v2")
