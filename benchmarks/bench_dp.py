"""Where DP-SGD's time goes for the DP captioner (notebook 09's DP study): milliseconds per image and step of
one pass over the same data, side by side in one run, for

* ``plain``: the same ``DPEncoderDecoder`` (DPLSTM + GroupNorm) trained without Opacus (no per-sample
  gradients, no clipping, no noise): the model's own cost;
* ``opacus``: Opacus DP-SGD as :func:`m4i_utils.models.dp_captioner.train_dp` runs it (per-sample gradients
  by hooks, clipping, noise; the control's noise 0 costs the same),

at several widths and batch sizes, one torch thread. Prints the figures and the Opacus / plain ratio: the
overhead that limits the DP models' size on a CPU (the README quotes it).

Run: ``python benchmarks/bench_dp.py [--images 1000] [--widths 32x64 64x128 128x256] [--batches 64 256]``.
Synthetic inputs of the default profile's shapes (1280-d trunk features, 5 captions of up to 14 tokens, a
90-word vocabulary); prints figures only.
"""

from __future__ import annotations

import argparse
import dataclasses
import time


def main() -> None:
    import torch

    from m4i_utils.core.config import resolve_profile
    from m4i_utils.models.dp_captioner import DPEncoderDecoder, per_image_loss, train_dp

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--widths", nargs="+", default=["32x64", "64x128", "128x256"], help="embed x hidden")
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = resolve_profile("default", {})
    n, caps, length, vocab, feat = args.images, 5, 14, 90, 1280
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(n, feat, generator=gen)
    tokens = torch.randint(3, vocab, (n, caps, length), generator=gen)
    tokens[:, :, 0], tokens[:, :, -1] = 1, 2
    n_caps = torch.full((n,), caps)
    print(f"{n} images, one thread; ms per image and step (Opacus: per pass, without the noise calibration)")
    print("embed x hidden, batch, plain, opacus, opacus / plain")
    for width in args.widths:
        emb, hid = (int(v) for v in width.split("x"))
        for batch in args.batches:
            torch.manual_seed(0)
            model = DPEncoderDecoder(feat, vocab, emb, hid, cfg.def_dp_norm_groups)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.def_dp_lr)
            start = time.perf_counter()
            for s in range(0, n, batch):
                pick = torch.randint(0, caps, (min(batch, n - s),), generator=gen)
                loss = per_image_loss(
                    model, feats[s : s + batch], tokens[s : s + batch][torch.arange(len(pick)), pick]
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
            plain = (time.perf_counter() - start) * 1000 / n
            times = []
            for passes in (1, 3):  # the difference removes the fixed cost of calibrating the noise
                torch.manual_seed(0)
                model = DPEncoderDecoder(feat, vocab, emb, hid, cfg.def_dp_norm_groups)
                start = time.perf_counter()
                train_dp(
                    model,
                    feats,
                    tokens,
                    n_caps,
                    dataclasses.replace(cfg, def_dp_batch_size=batch),
                    8.0,
                    passes,
                )
                times.append(time.perf_counter() - start)
            dp = (times[1] - times[0]) / 2 * 1000 / n
            print(f"{emb} x {hid}, {batch}, {plain:.2f}, {dp:.2f}, {dp / plain:.1f}x", flush=True)


if __name__ == "__main__":
    main()
