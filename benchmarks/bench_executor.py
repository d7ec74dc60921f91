"""Reference models per hour: in process (one after another) vs a local Dask cluster of 2 workers.

Trains the same population models (notebook 10's protocol, :mod:`m4i_utils.experiments.calibrated`) twice,
each time in a fresh cache folder, once per executor, one torch thread per process, and prints the models
per hour of each and their ratio. The weights are compared: the same seeds give the same models whichever
executor trained them.

Run: ``python benchmarks/bench_executor.py [--profile default] [--models 4] [--epochs 5]`` (the environment
has m4i_utils installed). The trunk features and the world are built once, before the timing. Prints figures
only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--models", type=int, default=4, help="population models to train per executor")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the profile's)")
    args = parser.parse_args()
    os.environ["M4I_THREADS"] = "1"  # one torch thread in process, as in each Dask worker
    import shutil

    import torch

    from m4i_utils.core.config import resolve_profile
    from m4i_utils.experiments import calibrated
    from m4i_utils.models.trunks import features_for

    weights, rate = {}, {}
    sizes = {"calib_models": args.models, "calib_ablation": (1,)} | (
        {"epochs": args.epochs} if args.epochs else {}
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = resolve_profile(args.profile, {"cache_dir": f"{tmp}/warm", **sizes})
        pop = calibrated.build_population(base)
        family = base.families[0]
        features_for(base, pop.dataset, family)  # the world, splits and features: not part of the timing
        for executor in ("inprocess", "local"):
            folder = f"{tmp}/{executor}"
            shutil.copytree(f"{tmp}/warm", folder)
            cfg = resolve_profile(
                args.profile,
                {"cache_dir": folder, **sizes, "executor": executor, "workers": 2},
            )
            start = time.time()
            models = calibrated.train_population(cfg, pop, family)
            seconds = time.time() - start
            rate[executor] = len(models) * 3600 / seconds
            weights[executor] = [m.model.state_dict() for m in models]
            per_hour = f"{rate[executor]:.0f} models per hour"
            print(f"{executor:>9}: {len(models)} models in {seconds:.1f} s = {per_hour}")
    same = all(
        torch.equal(a[k], b[k])
        for a, b in zip(weights["inprocess"], weights["local"], strict=True)
        for k in a
    )
    print(f"local cluster / in process: {rate['local'] / rate['inprocess']:.2f}x; identical weights: {same}")


if __name__ == "__main__":
    main()
