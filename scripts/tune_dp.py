"""Choose the DP captioner's hyperparameters on public data only (notebook 09's DP study).

The DP study must not tune on its members: every choice made by looking at them would be outside the
accounting. This script trains the DP captioner of :mod:`m4i_utils.models.dp_captioner` on public images
only (the first ``def_dp_members`` images of the public split after ``val``:
:func:`m4i_utils.experiments.dp_study.tuning_records`, which the DP study never draws from) and measures
held-out BLEU-1 / ROUGE-L on the public ``val`` images beside the constant caption, for each setting of the
grid. The DP defaults in ``core/config.py`` came from its output (the README quotes it).

Usage::

    python scripts/tune_dp.py --profile default --epsilons 8 none --lrs 0.002 0.005 --batch-sizes 64 128
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import torch


def main() -> None:
    from m4i_utils.core.config import resolve_profile
    from m4i_utils.data.bundles import load_bundle
    from m4i_utils.data.text import Vocabulary
    from m4i_utils.models.captioner import constant_baseline
    from m4i_utils.models.dp_captioner import DPEncoderDecoder, caption_tensor, pretrain_public, train_dp
    from m4i_utils.models.mfe import public_features
    from m4i_utils.signals.text_similarity import utility_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--epsilons", nargs="+", default=["8", "none"], help="target epsilons; none = control")
    ap.add_argument("--lrs", nargs="+", type=float, default=[2e-3])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    ap.add_argument("--passes", nargs="+", type=int, default=[20])
    ap.add_argument("--clip", nargs="+", type=float, default=[1.0])
    ap.add_argument("--groups", nargs="+", type=int, default=None, help="GroupNorm groups (default: config)")
    ap.add_argument("--public-passes", nargs="+", type=int, default=None,
                    help="non-private passes of the public start (default: config; 0 = DP from scratch); the "
                    "start trains on the first half of the tuning images, DP on the second half")  # fmt: skip
    args = ap.parse_args()

    cfg = resolve_profile(args.profile, {})
    torch.set_num_threads(max(1, cfg.threads))
    dataset, family = cfg.datasets[0], cfg.families[0]
    bundle = load_bundle(cfg, dataset)
    table = public_features(cfg, dataset, family)
    from m4i_utils.experiments.dp_study import tuning_records

    val, tuning = bundle.role("val"), tuning_records(cfg, bundle)
    vocab = Vocabulary.build((c for r in tuning.records for c in r.captions), cfg.vocab_threshold)
    refs = [r.captions for r in val.records]
    val_feats = table.take(val)
    print(
        "epsilon,lr,batch,passes,clip,groups,public_passes,noise,steps,seconds,bleu1,rougeL,distinct_captions"
    )
    public_grid = args.public_passes if args.public_passes is not None else [cfg.def_dp_public_passes]
    grid = itertools.product(args.epsilons, args.lrs, args.batch_sizes, args.passes, args.clip,
                             args.groups or [cfg.def_dp_norm_groups], public_grid)  # fmt: skip
    for eps, lr, bs, passes, clip, groups, public_passes in grid:
        c = dataclasses.replace(cfg, def_dp_lr=lr, def_dp_batch_size=bs, def_dp_max_grad_norm=clip,
                                def_dp_norm_groups=groups)  # fmt: skip
        # with a public start: start on the first half of the tuning images, DP on the second half
        half = len(tuning) // 2
        public = tuning.subset(range(half)) if public_passes else None
        train = tuning.subset(range(half, len(tuning))) if public_passes else tuning
        tokens, n_caps = caption_tensor(train, vocab, cfg.max_caption_len)
        feats = table.take(train)
        base = utility_metrics([constant_baseline(train)] * len(refs), refs)
        torch.manual_seed(cfg.seed)
        model = DPEncoderDecoder(feats.shape[1], len(vocab), c.def_dp_embed_size, c.def_dp_hidden_size,
                                 c.def_dp_norm_groups).set_feature_stats(table.take(tuning))  # fmt: skip
        start = time.time()
        if public is not None:
            p_tokens, p_caps = caption_tensor(public, vocab, cfg.max_caption_len)
            pretrain_public(model, table.take(public), p_tokens, p_caps, c, public_passes, cfg.seed)
        hist = train_dp(model, feats, tokens, n_caps, c, None if eps == "none" else float(eps), passes,
                        cfg.seed, f"tune eps={eps}")  # fmt: skip
        model.eval()
        with torch.no_grad():
            hyps = [vocab.decode(t.tolist()) for t in model.greedy(val_feats, cfg.max_caption_len)]
        u = utility_metrics(hyps, refs)
        print(f"{eps},{lr:g},{bs},{passes},{clip:g},{groups},{public_passes},{hist['noise_multiplier']:.3f},"
              f"{hist['steps']},{time.time() - start:.0f},{u['bleu1']:.3f},{u['rougeL']:.3f},{len(set(hyps))}"
              f" (constant caption of its {len(train)} DP images: {base['bleu1']:.3f} / "
              f"{base['rougeL']:.3f})",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
