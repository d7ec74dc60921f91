import numpy as np
import pytest

from m4i_utils.core import config
from m4i_utils.data import datasets, splits, synthetic
from m4i_utils.data.records import DataError


@pytest.fixture(scope="module")
def smoke_cfg(tmp_path_factory):
    return config.resolve_profile("smoke", {"cache_dir": str(tmp_path_factory.mktemp("cache"))})


def test_splits_disjoint_and_sized(smoke_cfg):
    corpus = datasets.load_corpus("synth_coco", smoke_cfg)
    s = splits.make_splits(corpus, smoke_cfg)
    splits.check_disjoint(s)
    sizes = s.sizes()
    assert sizes["target_members"] == smoke_cfg.n_target_members
    assert sizes["public"] == len(corpus) - sum(splits.split_sizes(smoke_cfg).values())
    assert sum(sizes.values()) == len(corpus)


def test_splits_deterministic_and_seed_dependent():
    sizes = {
        "target_members": 10,
        "target_nonmembers": 10,
        "target_test": 5,
        "shadow_members": 10,
        "shadow_nonmembers": 10,
    }
    a = splits.compute_splits(100, sizes, 10, seed=0, dataset="d")
    b = splits.compute_splits(100, sizes, 10, seed=0, dataset="d")
    c = splits.compute_splits(100, sizes, 10, seed=1, dataset="d")
    assert a == b and a != c


def test_impossible_split_sizes_are_a_clear_error():
    sizes = {"target_members": 60, "target_nonmembers": 60}
    with pytest.raises(DataError, match="impossible split sizes.*holds 100"):
        splits.compute_splits(100, sizes, 10, seed=0, dataset="d")


def test_synthetic_world_is_deterministic_and_captioned():
    a_img, a_cap, _ = synthetic.generate_world("synth_iapr", 20, 32, seed=3)
    b_img, b_cap, _ = synthetic.generate_world("synth_iapr", 20, 32, seed=3)
    c_img, _, _ = synthetic.generate_world("synth_iapr", 20, 32, seed=4)
    assert np.array_equal(a_img, b_img) and a_cap == b_cap and not np.array_equal(a_img, c_img)
    assert a_img.shape == (20, 32, 32, 3) and all(len(c) == 5 and all(c) for c in a_cap)


def test_worlds_differ_in_vocabulary():
    vocab = {}
    for name in synthetic.WORLDS:
        _, caps, _ = synthetic.generate_world(name, 50, 32, seed=0)
        vocab[name] = {w for cs in caps for c in cs for w in c.split()}
    names = list(vocab)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            jaccard = len(vocab[a] & vocab[b]) / len(vocab[a] | vocab[b])
            assert jaccard < 0.5, (a, b, jaccard)


def test_unknown_dataset_is_a_clear_error(smoke_cfg):
    with pytest.raises(DataError, match="unknown dataset"):
        datasets.load_corpus("imagenet", smoke_cfg)


def test_caption_wording_varies_and_has_no_template_syntax():
    _, caps, _ = synthetic.generate_world("synth_coco", 200, 16, seed=0)
    flat = [c for cs in caps for c in cs]
    assert not any(ch in c for c in flat for ch in "[]|{}")
    openings = {c.split(" of a ")[0] for c in flat if " of a " in c and c.split()[1] != "student"}
    assert {"a photo", "a picture", "an image", "a snapshot"} <= openings


@pytest.mark.parametrize("name", sorted(synthetic.WORLDS))
def test_visual_nearest_neighbour_beats_constant_caption(name):
    """Issue 3's utility bar is attainable: a caption copied from a training image with the same visible
    content (main object, its colour, background, second object) beats the most frequent training caption on
    held-out images in BLEU-1 and ROUGE-L. Before annotators' wording varied it did not (synth_coco)."""
    from m4i_utils.data.records import Corpus, Record
    from m4i_utils.models.captioner import constant_baseline
    from m4i_utils.signals.text_similarity import utility_metrics

    imgs, caps, lat = synthetic.generate_world(name, 2000, 16, seed=0)

    def visible(i: int, full: bool) -> tuple:
        main, other = lat[i]["objects"][:2]
        return (main["noun"], main["color"]) + ((lat[i]["background"], other["noun"]) if full else ())

    train = Corpus(name, tuple(Record(str(i), imgs[i], tuple(caps[i])) for i in range(1500)))
    index: dict[tuple, int] = {}
    for i in range(1500):
        index.setdefault(visible(i, True), i)
        index.setdefault(visible(i, False), i)
    held_out = range(1500, 2000)
    refs = [caps[i] for i in held_out]
    copied = [caps[index.get(visible(i, True), index.get(visible(i, False), 0))][0] for i in held_out]
    const = utility_metrics([constant_baseline(train)] * len(refs), refs)
    nn = utility_metrics(copied, refs)
    assert nn["bleu1"] > const["bleu1"] + 0.05 and nn["rougeL"] > const["rougeL"] + 0.08, (nn, const)
