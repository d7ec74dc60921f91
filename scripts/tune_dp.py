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
    from m4i_utils.models.dp_captioner import DPEncoderDecoder, caption_tensor, train_dp
    from m4i_utils.models.mfe import public_features
    from m4i_utils.signals.text_similarity import utility_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--epsilons", nargs="+", default=["8", "none"], help="target epsilons; none = control")
    ap.add_argument("--lrs", nargs="+", type=float, default=[2e-3])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    ap.add_argument("--passes", nargs="+", type=int, default=[20])
    ap.add_argument("--clip", nargs="+", type=float, default=[1.0])
    args = ap.parse_args()

    cfg = resolve_profile(args.profile, {})
    torch.set_num_threads(max(1, cfg.threads))
    dataset, family = cfg.datasets[0], cfg.families[0]
    bundle = load_bundle(cfg, dataset)
    table = public_features(cfg, dataset, family)
    from m4i_utils.experiments.dp_study import tuning_records

    val, train = bundle.role("val"), tuning_records(cfg, bundle)
    vocab = Vocabulary.build((c for r in train.records for c in r.captions), cfg.vocab_threshold)
    tokens, n_caps = caption_tensor(train, vocab, cfg.max_caption_len)
    feats, val_feats = table.take(train), table.take(val)
    refs = [r.captions for r in val.records]
    base = utility_metrics([constant_baseline(train)] * len(refs), refs)
    print(f"{dataset} x {family}: {len(train)} public training images, {len(val)} public val images; "
          f"constant caption BLEU-1 {base['bleu1']:.3f}, ROUGE-L {base['rougeL']:.3f}")  # fmt: skip
    print("epsilon,lr,batch,passes,clip,noise,steps,seconds,bleu1,rougeL")
    for eps, lr, bs, passes, clip in itertools.product(args.epsilons, args.lrs, args.batch_sizes, args.passes,
                                                       args.clip):  # fmt: skip
        c = dataclasses.replace(cfg, def_dp_lr=lr, def_dp_batch_size=bs, def_dp_max_grad_norm=clip)
        torch.manual_seed(cfg.seed)
        model = DPEncoderDecoder(feats.shape[1], len(vocab), c.def_dp_embed_size, c.def_dp_hidden_size,
                                 c.def_dp_norm_groups)  # fmt: skip
        start = time.time()
        hist = train_dp(model, feats, tokens, n_caps, c, None if eps == "none" else float(eps), passes,
                        cfg.seed, f"tune eps={eps}")  # fmt: skip
        model.eval()
        with torch.no_grad():
            hyps = [vocab.decode(t.tolist()) for t in model.greedy(val_feats, cfg.max_caption_len)]
        u = utility_metrics(hyps, refs)
        print(f"{eps},{lr:g},{bs},{passes},{clip:g},{hist['noise_multiplier']:.3f},{hist['steps']},"
              f"{time.time() - start:.0f},{u['bleu1']:.3f},{u['rougeL']:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
