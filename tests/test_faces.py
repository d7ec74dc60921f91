"""The procedural faces world (notebook 11): distinct names, seeded pixels, identity kept across nuisance."""

import numpy as np
import pytest

from m4i_utils.data import faces


def test_identities_have_distinct_names_and_are_seeded():
    people = faces.make_identities(300, seed=0)
    assert len({p.name for p in people}) == 300
    assert [p.name for p in faces.make_identities(300, seed=0)] == [p.name for p in people]
    assert [p.name for p in faces.make_identities(300, seed=1)] != [p.name for p in people]
    limit = len(faces.FIRST_NAMES) * len(faces.LAST_NAMES)
    with pytest.raises(ValueError, match=f"1 to {limit} identities"):
        faces.make_identities(limit + 1, seed=0)


def test_images_are_seeded_and_differ_per_image():
    person = faces.make_identities(1, seed=0)[0]
    a = faces.render_face(person, seed=0, index=0)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, faces.render_face(person, seed=0, index=0))
    assert not np.array_equal(a, faces.render_face(person, seed=0, index=1))


def test_identity_survives_the_nuisance():
    """Leave-one-out nearest-centroid identification on the raw pixels of the central crop is far above
    chance: the face, not the nuisance, is what images of one person share (chance here is 1/20)."""
    people = faces.make_identities(20, seed=3)
    k = 6
    x = np.stack([faces.render_face(p, 3, i, size=32, occluder_p=0.0) for p in people for i in range(k)])
    x = x[:, 8:-8, 8:-8].reshape(len(x), -1).astype(np.float64)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    y = np.repeat(np.arange(len(people)), k)
    correct = 0
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        cents = np.stack([x[keep & (y == c)].mean(0) for c in range(len(people))])
        correct += int(np.argmin(((cents - x[i]) ** 2).sum(1)) == y[i])
    assert correct / len(x) > 0.3
