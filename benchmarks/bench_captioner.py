"""Speed benchmark of the captioner design choices (M4I section 4.1 victims), printed side by side.

(a) decoding: batched greedy vs the authors' one-image-at-a-time loop, images/s;
(b) training: an epoch on cached trunk features vs recomputing the frozen trunk at every step (the authors'
    data loader feeds images), s/epoch (extrapolated from a few timed batches each).

Sizes come from a profile (default: ``default``): trunk ``resnet_trunk`` / ``vgg_trunk`` at
``trunk_input_size``, embedding / hidden sizes, batch size, ``n_target_members`` x 5 pairs per epoch. Weights
are random (speed does not depend on them) and inputs are random tensors, so nothing is downloaded or cached.

Usage: ``python benchmarks/bench_captioner.py [--profile default] [--family resnet] [--images 256]``
"""

from __future__ import annotations

import argparse
import time

import torch

from m4i_utils.core import config
from m4i_utils.core.runtime import cpu_threads
from m4i_utils.models import captioner as C
from m4i_utils.models import trunks


def _time(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--family", default="resnet")
    parser.add_argument("--images", type=int, default=256, help="images decoded in (a)")
    parser.add_argument("--batches", type=int, default=4, help="timed training batches per variant in (b)")
    parser.add_argument("--vocab", type=int, default=120)
    args = parser.parse_args()
    cfg = config.resolve_profile(args.profile)
    torch.set_num_threads(cpu_threads())
    torch.manual_seed(0)
    trunk = trunks.build_trunk(cfg, args.family, weights="random")
    model = C.EncoderDecoder(trunk.dim, args.vocab, cfg.embed_size, cfg.hidden_size).eval()
    print(
        f"profile {cfg.profile}: {trunks.trunk_name(cfg, args.family)} @ {cfg.trunk_input_size}px "
        f"(feature dim {trunk.dim}), embed {cfg.embed_size}, hidden {cfg.hidden_size}, "
        f"batch {cfg.batch_size}, {cpu_threads()} CPU threads"
    )

    # (a) decoding
    feats = torch.randn(args.images, trunk.dim)
    model.greedy(feats[:8], cfg.max_caption_len)  # warm-up
    t_batched = _time(lambda: model.greedy(feats, cfg.max_caption_len))
    few = feats[: max(16, args.images // 8)]
    t_loop = _time(lambda: C.greedy_one_by_one(model, few, cfg.max_caption_len)) * len(feats) / len(few)
    assert torch.equal(
        model.greedy(few, cfg.max_caption_len), C.greedy_one_by_one(model, few, cfg.max_caption_len)
    )
    a_b, a_l = args.images / t_batched, args.images / t_loop

    # (b) one training epoch: n_target_members images x 5 captions
    n_pairs = cfg.n_target_members * 5
    n_batches = -(-n_pairs // cfg.batch_size)
    bs, size = cfg.batch_size, cfg.trunk_input_size
    tokens = torch.randint(4, args.vocab, (bs, 14))
    tokens[:, 0], tokens[:, -1] = 1, 2
    images = torch.randn(bs, 3, size, size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(f: torch.Tensor) -> None:
        model.train()
        loss = C.pair_loss(model, f, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def step_cached() -> None:
        step(feats[torch.randint(len(feats), (bs,))])

    def step_trunk() -> None:
        with torch.no_grad():
            f = trunk(images)
        step(f)

    step_cached()
    step_trunk()
    e_cached = _time(step_cached, args.batches) * n_batches
    e_trunk = _time(step_trunk, args.batches) * n_batches

    print()
    print(f"{'':34}{'fast (ours)':>14}{'slow (authors)':>16}{'speed-up':>10}")
    print(f"{'(a) greedy decoding, images/s':34}{a_b:14.1f}{a_l:16.1f}{a_b / a_l:9.1f}x")
    print(f"{'(b) training epoch, s/epoch':34}{e_cached:14.2f}{e_trunk:16.2f}{e_trunk / e_cached:9.1f}x")
    print(f"    ((b): {n_pairs} pairs = {n_batches} batches; extrapolated from {args.batches} timed batches)")


if __name__ == "__main__":
    main()
