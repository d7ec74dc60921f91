"""Reference models per hour: in process (one after another) vs a local Dask cluster of 2 workers, with
glibc's default malloc settings and with the runner's (:data:`m4i_utils.core.runtime.ALLOCATOR_ENV`).

Trains the same population models (notebook 10's protocol, :mod:`m4i_utils.experiments.calibrated`) four
times, each in a fresh cache folder: once per executor under each allocator setting, one torch thread per
process. glibc reads its settings when a process starts, so each allocator setting runs in its own child
process (and its Dask workers inherit it). Prints the models per hour of each, the ratios, and whether all
four runs trained identical weights (the same seeds give the same models whichever executor or allocator
trained them).

Run: ``python benchmarks/bench_executor.py [--profile default] [--models 4] [--epochs 5]`` (the environment
has m4i_utils installed). The trunk features and the world are built once per child, before the timing.
Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

EXECUTORS = ("inprocess", "local")


def child(args: argparse.Namespace) -> None:
    """Time both executors under this process's allocator settings; write the weights to ``args.weights``."""
    os.environ["M4I_THREADS"] = "1"  # one torch thread in process, as in each Dask worker
    import shutil

    import torch

    from m4i_utils.core.config import resolve_profile
    from m4i_utils.experiments import calibrated
    from m4i_utils.models.trunks import features_for

    weights, seconds = {}, {}
    sizes = {"calib_models": args.models, "calib_ablation": (1,)} | (
        {"epochs": args.epochs} if args.epochs else {}
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = resolve_profile(args.profile, {"cache_dir": f"{tmp}/warm", **sizes})
        pop = calibrated.build_population(base)
        family = base.families[0]
        features_for(base, pop.dataset, family)  # the world, splits and features: not part of the timing
        for executor in EXECUTORS:
            folder = f"{tmp}/{executor}"
            shutil.copytree(f"{tmp}/warm", folder)
            cfg = resolve_profile(
                args.profile,
                {"cache_dir": folder, **sizes, "executor": executor, "workers": 2},
            )
            start = time.time()
            models = calibrated.train_population(cfg, pop, family)
            seconds[executor] = time.time() - start
            weights[executor] = [m.model.state_dict() for m in models]
    torch.save(weights, args.weights)
    print("RESULT " + json.dumps({"models": args.models, "seconds": seconds}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--models", type=int, default=4, help="population models to train per executor")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the profile's)")
    parser.add_argument("--weights", help=argparse.SUPPRESS)  # set for the child processes
    args = parser.parse_args()
    if args.weights:
        child(args)
        return
    import torch

    from m4i_utils.core.runtime import ALLOCATOR_ENV

    settings = {"glibc default": {"M4I_ALLOCATOR": "glibc"}, "m4i (ALLOCATOR_ENV)": ALLOCATOR_ENV}
    seconds, weights = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in settings.items():
            env = {k: v for k, v in os.environ.items() if k not in [*ALLOCATOR_ENV, "M4I_ALLOCATOR"]} | extra
            path = f"{tmp}/{len(seconds)}.pt"
            cmd = [sys.executable, __file__, "--profile", args.profile, "--models", str(args.models)]
            cmd += ["--epochs", str(args.epochs)] if args.epochs else []
            out = subprocess.run(
                [*cmd, "--weights", path], env=env, check=True, capture_output=True, text=True
            ).stdout
            line = next(x for x in out.splitlines() if x.startswith("RESULT "))
            seconds[name] = json.loads(line[len("RESULT ") :])["seconds"]
            weights[name] = torch.load(path)
    base = seconds["glibc default"]["inprocess"]
    print(f"{args.models} population models, profile {args.profile}, one torch thread per process")
    header = f"{'allocator':<20} {'executor':<10} {'seconds':>8} {'models/hour':>12}"
    print(f"{header} {'vs default in process':>22}")
    for name, times in seconds.items():
        for executor in EXECUTORS:
            rate = args.models * 3600 / times[executor]
            row = f"{name:<20} {executor:<10} {times[executor]:8.1f} {rate:12.0f}"
            print(f"{row} {base / times[executor]:21.2f}x")
    runs = [w for per_setting in weights.values() for w in per_setting.values()]
    same = all(
        torch.equal(a[k], b[k]) for run in runs[1:] for a, b in zip(runs[0], run, strict=True) for k in a
    )
    print(f"identical weights in all four runs: {same}")


if __name__ == "__main__":
    main()
