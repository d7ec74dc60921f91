"""The run store (m4i_utils.core.runstore) and the runner's run folders: no run overwrites another's."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m4i_utils.core import runner, runstore
from m4i_utils.core.config import resolve_profile
from m4i_utils.core.metrics import AttackResult, compute_metrics


def _paths(tmp_path: Path) -> dict[str, str]:
    return {"output_dir": str(tmp_path / "figures"), "runs_dir": str(tmp_path / "runs")}


def _result(seed: int, **meta) -> AttackResult:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(30, int), np.zeros(30, int)]
    scores = labels + rng.normal(0, 1, 60)
    ids = [f"synth_coco/{i}" for i in range(60)]
    return AttackResult(scores, labels, 0.5, {"experiment": "exp", "attack": "mb", "seed": seed, **meta}, ids)


def _store(cfg, seed: int) -> None:
    res = _result(seed, svm_converged=False)
    runstore.upsert_results(cfg, [runstore.result_row(res, compute_metrics(res, n_bootstrap=5))], "exp")
    runstore.save_scores(cfg, [res], "exp")


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def test_plain_run_writes_to_profile_folder_and_override_run_to_its_own(tmp_path: Path) -> None:
    plain = resolve_profile("smoke", _paths(tmp_path))
    assert plain.overrides == () and plain.figures_dir == tmp_path / "figures" / "smoke"
    same = resolve_profile("smoke", {**_paths(tmp_path), "seed": 0})  # the profile's own value: still plain
    assert same.run_id == plain.run_id and same.figures_dir == plain.figures_dir
    other = resolve_profile("smoke", {**_paths(tmp_path), "epochs": 3})
    assert other.overrides == (("epochs", 3),) and other.run_id != plain.run_id
    assert other.figures_dir == tmp_path / "runs" / "smoke" / other.run_id
    assert '"epochs": 3' in (other.figures_dir / "config.json").read_text()


def test_override_run_leaves_profile_folder_byte_identical(tmp_path: Path) -> None:
    plain = resolve_profile("smoke", _paths(tmp_path))
    _store(plain, 0)
    before = _tree_digest(plain.figures_dir)
    _store(resolve_profile("smoke", {**_paths(tmp_path), "seed": 1}), 1)
    _store(resolve_profile("smoke", {**_paths(tmp_path), "beam_width": 3}), 0)
    assert _tree_digest(plain.figures_dir) == before


def test_rows_carry_run_id_seed_overrides_and_diagnostics(tmp_path: Path) -> None:
    cfg = resolve_profile("smoke", {**_paths(tmp_path), "seed": 4})
    _store(cfg, 4)
    rows = runstore.read_results(cfg.figures_dir / "results.csv")
    assert rows["run_id"].tolist() == [cfg.run_id] and rows["seed"].tolist() == [4]
    assert rows["overrides"].tolist() == ['{"seed": 4}']
    assert rows["svm_converged"].tolist() == [False]


def test_per_sample_scores_round_trip_and_replace_own_rows_only(tmp_path: Path) -> None:
    a = resolve_profile("smoke", {**_paths(tmp_path), "run_dir": str(tmp_path / "shared")})
    b = resolve_profile("smoke", {**_paths(tmp_path), "run_dir": str(tmp_path / "shared"), "seed": 1})
    _store(a, 0)
    _store(b, 1)
    _store(a, 0)  # re-running run a replaces its scores, keeps b's
    scores = runstore.read_scores(tmp_path / "shared" / "scores.parquet")
    assert len(scores) == 120 and set(scores["run_id"]) == {a.run_id, b.run_id}
    mine = scores[scores["run_id"] == a.run_id]
    res = _result(0)
    np.testing.assert_array_equal(mine["score"].to_numpy(), res.scores)
    np.testing.assert_array_equal(mine["label"].to_numpy(), res.labels)
    assert mine["record_id"].tolist() == list(res.ids)


def test_a_scores_file_of_an_older_format_is_named_not_overwritten(tmp_path: Path) -> None:
    cfg = resolve_profile("smoke", {**_paths(tmp_path), "run_dir": str(tmp_path / "old")})
    _store(cfg, 0)
    path = tmp_path / "old" / "scores.parquet"
    pd.read_parquet(path).drop(columns=["overrides"]).to_parquet(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"scores\.parquet lacks the columns \['overrides'\]"):
        _store(cfg, 0)
    assert path.read_bytes() == before


def test_attack_result_rejects_ids_of_wrong_length() -> None:
    with pytest.raises(ValueError, match="ids"):
        AttackResult(np.zeros(3), np.array([0, 1, 1]), 0.5, {}, np.array(["a", "b"]))


def test_aggregate_seeds_mean_sd_n() -> None:
    table = pd.DataFrame(
        {
            "experiment": "e",
            "attack": "mb",
            "target": "CM",
            "seed": [0, 1, 2],
            "auc": [0.6, 0.7, 0.8],
            "accuracy": [0.5, 0.6, 0.7],
            "tpr_at_1pct_fpr": [0.0, 0.1, 0.2],
        }  # fmt: skip
    )
    agg = runstore.aggregate_seeds(table)
    assert len(agg) == 1 and agg["n_seeds"].item() == 3
    assert agg["auc_mean"].item() == pytest.approx(0.7) and agg["auc_sd"].item() == pytest.approx(0.1)


def test_seed_grid_keeps_every_seed_and_leaves_figures_untouched(tmp_path: Path, monkeypatch) -> None:
    """``grid 04 -p seed=0,1``: each cell in its own folder, both seeds collected, figures/ untouched."""
    figures = tmp_path / "figures"
    monkeypatch.setattr("m4i_utils.core.config.REPO_ROOT", tmp_path)
    plain = resolve_profile("smoke", _paths(tmp_path))
    _store(plain, 0)
    before = _tree_digest(figures)

    def fake_execute(notebook, output, profile, overrides):
        cfg = resolve_profile(profile, {**overrides, **_paths(tmp_path)})
        _store(cfg, cfg.seed)
        return runner.RunRecord(notebook.name, output, 0.0, None)

    monkeypatch.setattr(runner, "execute", fake_execute)
    assert (
        runner.main(["grid", "04", "--profile", "smoke", "-p", "seed=0,1", "--out", str(tmp_path / "runs")])
        == 0
    )
    (folder,) = (tmp_path / "runs" / "smoke").glob("grid-04-*")
    rows = runstore.read_results(folder / "results.csv")
    assert sorted(rows["seed"]) == [0, 1] and rows["run_id"].nunique() == 2
    agg = pd.read_csv(folder / "results_over_seeds.csv")
    assert agg["n_seeds"].tolist() == [2]
    assert _tree_digest(figures) == before


def test_paper_profile_fails_before_any_work_naming_every_missing_dataset(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("M4I_DATA_ROOT", str(tmp_path))
    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("a notebook ran"))
    with pytest.raises(SystemExit) as exc:
        runner.main(["run", "--profile", "paper", "--out", str(tmp_path / "runs")])
    message = str(exc.value)
    for name in ("mscoco", "flickr8k", "iapr_tc12"):
        assert f"- {name}:" in message
    assert "cocodataset.org" in message and "imageclef" in message


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("executor", ["inprocess", "local"])
def test_executor_runs_jobs_in_order(executor: str) -> None:
    from m4i_utils.core.executor import run_jobs

    cfg = resolve_profile("smoke", {"executor": executor, "workers": 2})
    assert run_jobs(cfg, _square, [(i,) for i in range(6)]) == [0, 1, 4, 9, 16, 25]
    assert cfg.run_id == resolve_profile("smoke").run_id  # where jobs run is not part of the science


def _environment(names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


def test_local_workers_start_with_one_thread_and_the_allocator_settings(monkeypatch) -> None:
    from m4i_utils.core.executor import run_jobs
    from m4i_utils.core.runtime import ALLOCATOR_ENV

    monkeypatch.setenv("MALLOC_TOP_PAD_", "12345")  # a value the user set wins over the default
    before = dict(os.environ)
    names = ("M4I_THREADS", "OMP_NUM_THREADS", *ALLOCATOR_ENV)
    cfg = resolve_profile("smoke", {"executor": "local", "workers": 2})
    seen = run_jobs(cfg, _environment, [(names,), (names,)])
    expected = {"M4I_THREADS": "1", "OMP_NUM_THREADS": "1"} | ALLOCATOR_ENV | {"MALLOC_TOP_PAD_": "12345"}
    # Dask's default pre-spawn environment sets MALLOC_TRIM_THRESHOLD_=65536; ours must replace it
    assert seen == [expected, expected]
    assert dict(os.environ) == before  # the calling process (a notebook kernel) keeps its own environment


def _append(path: str, word: str) -> str:
    with open(path, "a") as fh:
        fh.write(word + "\n")
    return word


@pytest.mark.parametrize("executor", ["inprocess", "local"])
def test_run_graph_starts_a_task_after_its_prerequisites(executor: str, tmp_path) -> None:
    from m4i_utils.core.executor import Task, run_graph

    cfg = resolve_profile("smoke", {"executor": executor, "workers": 2})
    log = str(tmp_path / "log.txt")
    graph = {
        "trunk": Task(_append, (log, "trunk")),
        "features": Task(_append, (log, "features"), ("trunk",)),
        "a": Task(_append, (log, "a"), ("features",)),
        "b": Task(_append, (log, "b"), ("features",)),
        "other": Task(_append, (log, "other")),
    }
    out = run_graph(cfg, graph)
    assert out == {name: name for name in graph}
    order = (tmp_path / "log.txt").read_text().split()
    assert sorted(order) == sorted(graph)
    assert order.index("trunk") < order.index("features") < min(order.index("a"), order.index("b"))


def test_run_graph_rejects_a_prerequisite_listed_after_its_task() -> None:
    from m4i_utils.core.executor import Task, run_graph

    cfg = resolve_profile("smoke")
    with pytest.raises(ValueError, match="not listed before it"):
        run_graph(cfg, {"a": Task(_square, (1,), ("b",)), "b": Task(_square, (2,))})


def test_the_same_captioners_whichever_executor_trains_them(tmp_path, monkeypatch) -> None:
    """Trunk pretraining, features and captioners as a graph on 2 Dask workers give the weights of the
    in-process run (one thread each)."""
    import torch

    from m4i_utils.models.captioner import train_captioners

    monkeypatch.setenv("M4I_THREADS", "1")  # in process as in each worker: one torch thread
    weights = {}
    for executor in ("inprocess", "local"):
        cfg = resolve_profile(
            "smoke",
            {"executor": executor, "workers": 2, "cache_dir": str(tmp_path / executor)}
            | {"families": "mobilenet,resnet", "trunk_weights": "public_pretrain", "datasets": "synth_coco"},
        )
        caps = train_captioners(cfg, "target")
        weights[executor] = {c.label: c.model.state_dict() for c in caps}
    assert weights["inprocess"].keys() == weights["local"].keys() and len(weights["local"]) == 2
    for label, state in weights["inprocess"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, weights["local"][label][name]), (label, name)
