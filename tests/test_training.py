"""The one training loop (m4i_utils.models.training.fit): resume after a kill is bit-identical, early stopping
restores the best epoch, every model trains through it, and the cache hands builders a stable checkpoint
folder."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from m4i_utils.core import cache, config
from m4i_utils.models import training

ROOT = Path(__file__).resolve().parents[1]


class Interrupt(KeyboardInterrupt):
    pass


def _interrupt_at(k: int):
    def hook(epoch, _history):
        if epoch == k:
            raise Interrupt

    return hook


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g)
    return x, (x[:, :2].sum(1, keepdim=True) > 0).float()


def _run(epochs, checkpoint=None, hook=None, patience=None):
    """A tiny model that uses every source of randomness the loop checkpoints: the loop's generator (batch
    order), torch's global RNG (dropout), a numpy generator (noise) and a scheduler."""
    torch.manual_seed(1)
    x, y = _data()
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 7))
    gen = torch.Generator().manual_seed(2)
    rng = np.random.default_rng(3)

    def batches(_epoch, gen):
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 8):
            b = perm[s : s + 8]
            yield x[b] + torch.from_numpy(rng.normal(0, 0.01, (len(b), 6))).float(), y[b]

    def step_loss(m, batch):
        xb, yb = batch
        return nn.functional.binary_cross_entropy_with_logits(m(xb), yb), len(xb)

    def validate(m, _epoch):
        m.eval()
        with torch.no_grad():
            return float(nn.functional.binary_cross_entropy_with_logits(m(x[:10]), y[:10]))

    res = training.fit(
        model, opt, batches, step_loss, epochs, generator=gen, numpy_rng=rng, scheduler=sched,
        validate=validate, patience=patience, checkpoint=checkpoint, on_epoch_end=hook,
    )  # fmt: skip
    return model, res


def _assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("patience", [None, 100])
def test_resume_after_interrupt_is_bit_identical(tmp_path, patience):
    torch.set_num_threads(1)
    full, res_full = _run(6, patience=patience)
    with pytest.raises(Interrupt):
        _run(6, tmp_path / "ckpt", _interrupt_at(3), patience=patience)
    assert training.load_checkpoint(tmp_path / "ckpt")["epoch"] == 3
    resumed, res = _run(6, tmp_path / "ckpt", patience=patience)
    assert res.resumed_epoch == 3
    _assert_same_weights(full, resumed)
    assert res.history["train_loss"] == res_full.history["train_loss"]
    assert res.history["val_loss"] == res_full.history["val_loss"]
    assert (res.best_epoch, res.stopped_epoch) == (res_full.best_epoch, res_full.stopped_epoch)
    # a finished checkpoint: nothing left to train, same weights again
    again, res_again = _run(6, tmp_path / "ckpt")
    _assert_same_weights(full, again)
    assert res_again.resumed_epoch == 6
    # without the interruption the checkpointed run is the plain run
    plain, _ = _run(6, tmp_path / "other", patience=patience)
    _assert_same_weights(full, plain)


def test_early_stopping_restores_best_epoch():
    torch.set_num_threads(1)
    x, y = _data()
    model = nn.Linear(6, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scripted = iter([1.0, 0.9, 0.5, 0.5 - 1e-7, 0.8, 0.6, 0.1])  # epoch 0 (untrained) .. 6
    states = {}

    def batches(_epoch, gen):
        return [(x, y)]

    def step_loss(m, batch):
        return nn.functional.binary_cross_entropy_with_logits(m(batch[0]), batch[1]), len(batch[0])

    def keep(epoch, _history):
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    res = training.fit(model, opt, batches, step_loss, 20, validate=lambda m, e: next(scripted), patience=3,
                       on_epoch_end=keep)  # fmt: skip
    # epoch 3 improves by less than min_delta (1e-6): no improvement; 3, 4, 5 without one -> stop after 5
    assert (res.best_epoch, res.stopped_epoch) == (2, 5)
    assert res.history["val_loss"] == [0.9, 0.5, 0.5 - 1e-7, 0.8, 0.6]
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[2][k])
    assert not torch.equal(states[5]["weight"], states[2]["weight"])

    # no epoch better than the untrained model: the last weights are kept, best epoch 0
    model2 = nn.Linear(6, 1)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    res2 = training.fit(model2, opt2, batches, step_loss, 20, validate=lambda m, e: 1.0, patience=2)
    assert (res2.best_epoch, res2.stopped_epoch) == (0, 2)


def test_skipped_batches_and_extra_metrics():
    x, y = _data()
    model = nn.Linear(6, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step_loss(m, batch):
        if batch is None:
            return None
        loss = nn.functional.binary_cross_entropy_with_logits(m(batch[0]), batch[1])
        return loss, 1, {"double": 2 * float(loss.detach())}

    res = training.fit(model, opt, lambda e, g: [None, (x, y), None], step_loss, 2)
    assert res.history["skipped_batches"] == [2, 2]
    assert res.history["double"] == [2 * v for v in res.history["train_loss"]]


def test_exactly_one_backward_call_in_the_library():
    sites = []
    for path in sorted((ROOT / "m4i_utils").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if call and node.func.attr == "backward":
                sites.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(sites) == 1 and sites[0].startswith("m4i_utils/models/training.py:"), sites


def _tiny_captioner_run(checkpoint):
    from m4i_utils.models import captioner as C

    cfg = dataclasses.replace(
        config.resolve_profile("smoke"), epochs=4, batch_size=7, optimizer="adam", lr=0.01
    )
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(12, 3, 6, generator=g)  # augmented views: the loop's generator picks one per pair
    rows = torch.arange(12).repeat(2)
    tokens = torch.randint(3, 11, (24, 6), generator=g)
    tokens[:, 0], tokens[:, -1] = 1, 2
    torch.manual_seed(5)
    model = C.EncoderDecoder(6, 11, 8, 8)
    hist = C.train_model(model, feats, rows, tokens, cfg, seed=3, checkpoint=checkpoint)
    return model, hist


def _interrupting_fit(k):
    real = training.fit

    def wrapped(*args, **kwargs):
        kwargs["on_epoch_end"] = _interrupt_at(k)
        return real(*args, **kwargs)

    return wrapped


def test_captioner_training_resumes_bit_identically(tmp_path, monkeypatch):
    from m4i_utils.models import captioner as C

    torch.set_num_threads(1)
    full, hist_full = _tiny_captioner_run(None)
    with monkeypatch.context() as m:
        m.setattr(C, "fit", _interrupting_fit(2))
        with pytest.raises(Interrupt):
            _tiny_captioner_run(tmp_path)
    resumed, hist = _tiny_captioner_run(tmp_path)
    _assert_same_weights(full, resumed)
    assert hist["train_loss"] == hist_full["train_loss"]


def test_dp_training_resumes_bit_identically(tmp_path, monkeypatch):
    from m4i_utils.models import dp_captioner

    torch.set_num_threads(1)
    cfg = dataclasses.replace(
        config.resolve_profile("smoke"), def_dp_batch_size=4, optimizer="sgd", lr=0.1, def_dp_delta=1e-3
    )
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(16, 8, generator=g)
    tokens = torch.randint(3, 12, (16, 2, 5), generator=g)
    tokens[:, :, 0], tokens[:, :, -1] = 1, 2

    def run(checkpoint):
        torch.manual_seed(9)
        model = dp_captioner.DPEncoderDecoder(
            feat_dim=8, vocab_size=12, embed_size=8, hidden_size=8, groups=4
        )
        args = (model, feats, tokens, torch.full((16,), 2), cfg, 8.0, 3, 4)
        return model, dp_captioner.train_dp(*args, checkpoint=checkpoint)

    full, hist_full = run(None)
    with monkeypatch.context() as m:
        m.setattr(dp_captioner, "fit", _interrupting_fit(1))
        with pytest.raises(Interrupt):
            run(tmp_path)
    resumed, hist = run(tmp_path)
    _assert_same_weights(full, resumed)
    assert hist["train_loss"] == hist_full["train_loss"] and hist["epsilon"] == hist_full["epsilon"]


def test_cached_gives_builders_a_stable_checkpoint_folder(tmp_path):
    seen = []

    def build(out, checkpoints):
        seen.append(checkpoints)
        (checkpoints / "x").mkdir(parents=True, exist_ok=True)
        if len(seen) == 1:
            raise RuntimeError("killed")
        np.save(out / "a.npy", np.arange(3))

    with pytest.raises(RuntimeError, match="killed"):
        cache.cached(tmp_path, "demo", {"n": 1}, build)
    assert seen[0].is_dir()  # kept for the next attempt
    art = cache.cached(tmp_path, "demo", {"n": 1}, build)
    assert seen[0] == seen[1] == cache.checkpoint_dir(tmp_path, "demo", art.key)
    assert not seen[0].exists()  # removed once the artifact is complete
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [art.key]
