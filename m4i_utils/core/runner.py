"""Batch runner: execute the numbered notebooks in order through papermill, or one notebook over a grid.

    python -m m4i_utils run --profile default [--only 01 04] [-p KEY=VALUE ...]
    python -m m4i_utils grid 04 --profile default -p seed=0,1,2 [-p KEY=V1,V2 ...]
    python -m m4i_utils list

Each notebook receives ``PROFILE`` and ``OVERRIDES`` (a dict of config fields) as papermill parameters. A
plain profile run writes results to ``figures/<profile>/`` and executed notebooks to ``runs/<profile>/``; a
run with overrides writes both to ``runs/<profile>/<run_id>/`` (:mod:`m4i_utils.core.runstore`). A grid writes
each cell to ``runs/<profile>/grid-NN-<hash>/<cell>/`` and collects the cells' rows, with mean / sd / n over
seeds, in that grid folder. A summary of what ran, how long it took and what failed
is printed at the end, and the exit status is non-zero if anything failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from m4i_utils.core import runstore
from m4i_utils.core.config import PROFILES, REPO_ROOT, grid_combinations, validate_overrides
from m4i_utils.core.runtime import allocator_env
from m4i_utils.data.datasets import require_real_data
from m4i_utils.data.records import DataError

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
# notebooks whose executed copy is also written, as one self-contained HTML file, next to the run's figures
AUDIT_REPORTS = {"10_calibrated_attacks.ipynb": "10_cal__audit_report.html"}


@dataclass
class RunRecord:
    notebook: str
    output: Path
    seconds: float
    error: str | None


def list_notebooks(folder: Path = REPO_ROOT / "notebooks") -> list[Path]:
    """Numbered notebooks ``NN_snake_case.ipynb`` in execution order."""
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["seed=1", "epochs=3"]`` -> ``{"seed": "1", "epochs": "3"}`` (values are coerced by the config)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"error: parameter {pair!r} must look like KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def execute(notebook: Path, output: Path, profile: str, overrides: dict[str, Any]) -> RunRecord:
    """Execute one notebook with papermill; never raises, the error is recorded."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    os.environ["M4I_PROFILE"] = profile
    start = time.time()
    error = None
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters={"PROFILE": profile, "OVERRIDES": overrides},
            cwd=str(notebook.parent),
            progress_bar=True,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        traceback.print_exc(limit=1)
    return RunRecord(notebook.name, output, time.time() - start, error)


def write_report(executed: Path, html: Path) -> Path:
    """The executed notebook ``executed`` as one self-contained HTML file (nbconvert; figures are embedded
    in the notebook's outputs), code cells hidden: the run's audit report."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    ).from_filename(str(executed))
    html.write_text(body, encoding="utf-8")
    return html


def _summary(records: list[RunRecord]) -> int:
    print("\n== m4i run summary ==")
    for rec in records:
        status = "ok    " if rec.error is None else "FAILED"
        print(f"{status} {rec.notebook:<36} {rec.seconds:8.1f} s  -> {rec.output}")
        if rec.error:
            print(f"       {rec.error}")
    failed = sum(rec.error is not None for rec in records)
    total = sum(rec.seconds for rec in records)
    print(f"{len(records) - failed} ok, {failed} failed, {total:.1f} s in all")
    return 1 if failed else 0


def _select(only: list[str] | None) -> list[Path]:
    notebooks = list_notebooks()
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if nb.name[:2] in only or nb.stem in only]
    missing = [o for o in only if not any(nb.name[:2] == o or nb.stem == o for nb in notebooks)]
    if missing:
        raise SystemExit(f"error: no notebook matches {missing}; available: {[nb.stem for nb in notebooks]}")
    return chosen


def _check_data(cfg) -> None:
    """Exit with the data error before any notebook starts (e.g. the paper profile without its datasets)."""
    try:
        require_real_data(cfg)
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None


def pin_threads(cfg) -> None:
    """Give the notebook kernels ``cfg.threads`` torch threads (nothing when 0) and the malloc settings of
    :data:`~m4i_utils.core.runtime.ALLOCATOR_ENV`: the kernels inherit the variables, which must be set
    before they start."""
    os.environ.update(allocator_env())
    if cfg.threads:
        n = str(cfg.threads)
        os.environ.update({"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "M4I_THREADS": n})
        print(f"{n} CPU thread(s) per process (threads={n})", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.param)
    (cfg,) = validate_overrides(args.profile, overrides)  # before any notebook starts
    _check_data(cfg)
    pin_threads(cfg)
    # a run with overrides keeps its executed notebooks in its own folder, beside its results
    out_dir = Path(args.out) / args.profile / (f"{cfg.run_id}/notebooks" if cfg.overrides else "")
    print(f"run {cfg.run_id}: outputs in {cfg.figures_dir}, executed notebooks in {out_dir}", flush=True)
    records = []
    notebooks = _select(args.only)
    for i, nb in enumerate(notebooks, 1):
        print(f"\n[{i}/{len(notebooks)}] {nb.name} (profile {args.profile})", flush=True)
        records.append(execute(nb, out_dir / nb.name, args.profile, overrides))
        if nb.name in AUDIT_REPORTS and records[-1].error is None:
            html = write_report(out_dir / nb.name, cfg.figures_dir / AUDIT_REPORTS[nb.name])
            print(f"audit report: {html}", flush=True)
    return _summary(records)


def grid_folder(runs_dir: Path, profile: str, notebook: str, grid: dict[str, list[str]]) -> Path:
    """``runs/<profile>/grid-<notebook>-<hash of the grid>/``: the folder of one grid invocation."""
    spec = json.dumps({"notebook": notebook, "grid": grid}, sort_keys=True)
    return Path(runs_dir) / profile / f"grid-{notebook[:2]}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def collect_grid(folder: Path, cells: list[tuple[str, dict[str, str]]]) -> pd.DataFrame | None:
    """Gather every cell's ``results.csv`` rows into ``<folder>/results.csv`` and aggregate over seeds.

    ``<folder>/results_over_seeds.csv`` holds mean, sd and n per attack cell and per value of the grid's other
    keys (:func:`~m4i_utils.core.runstore.aggregate_seeds`). Returns the collected rows (None if no cell wrote
    any).
    """
    frames = []
    for tag, overrides in cells:
        table = runstore.read_results(folder / tag / runstore.RESULTS_FILE)
        if len(table):
            frames.append(table.assign(grid_cell=tag, **{f"grid_{k}": v for k, v in overrides.items()}))
    if not frames:
        return None
    rows = pd.concat(frames, ignore_index=True)
    rows.to_csv(folder / runstore.RESULTS_FILE, index=False)
    others = [f"grid_{k}" for k in cells[0][1] if k != "seed"]
    runstore.aggregate_seeds(rows, extra_keys=others).to_csv(folder / "results_over_seeds.csv", index=False)
    return rows


def cmd_grid(args: argparse.Namespace) -> int:
    params = parse_overrides(args.param)
    # every combination must resolve, with its data, before any notebook runs
    for cfg in validate_overrides(args.profile, params, grid=True):
        _check_data(cfg)
    pin_threads(cfg)
    (nb,) = _select([args.notebook])
    grid = {k: v.split(",") for k, v in params.items()}
    folder = grid_folder(Path(args.out), args.profile, nb.stem, grid)
    cells = [("__".join(f"{k}={v}" for k, v in o.items()) or "base", o) for o in grid_combinations(params)]
    print(f"grid of {len(cells)} runs of {nb.name}: outputs in {folder}", flush=True)
    records = []
    for i, (tag, overrides) in enumerate(cells, 1):
        print(f"\n[{i}/{len(cells)}] {nb.name} {tag}", flush=True)
        # each cell writes into its own sub-folder of the grid, never into figures/<profile>/
        cell = {**overrides, "run_dir": str(folder / tag)}
        records.append(execute(nb, folder / tag / nb.name, args.profile, cell))
    rows = collect_grid(folder, cells)
    if rows is not None:
        print(f"collected {len(rows)} result rows of {len(cells)} runs into {folder / runstore.RESULTS_FILE}")
    return _summary(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m4i_utils", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order")
    run.add_argument("--only", nargs="+", help="notebook numbers or stems, e.g. 01 04")
    grid = sub.add_parser("grid", help="execute one notebook over a grid of parameter values")
    grid.add_argument("notebook", help="notebook number or stem, e.g. 04")
    for p in (run, grid):
        p.add_argument("--profile", default="default", choices=sorted(PROFILES))
        p.add_argument("-p", "--param", action="append", default=[], help="KEY=VALUE (grid: KEY=V1,V2)")
        p.add_argument("--out", default=str(REPO_ROOT / "runs"), help="folder for executed notebooks")
    sub.add_parser("list", help="list the notebooks in execution order")
    args = parser.parse_args(argv)
    if args.command == "list":
        for nb in list_notebooks():
            print(nb.name)
        return 0
    sys.stdout.reconfigure(line_buffering=True)
    return cmd_run(args) if args.command == "run" else cmd_grid(args)
