"""Procedurally generated image-caption worlds: the embedded default data.

Three worlds stand in for the paper's MSCOCO, Flickr8k and IAPR TC-12 (appendix C.1) so that the 3 datasets x
2 architectures grid and the cross-dataset (constrained) scenario run offline. Each world draws images of
2-3 coloured objects on a world-specific background and writes 5 captions per image in 5 "annotator" styles.

Part of every caption is *not* predictable from the pixels: each image has hidden context (a place, a time,
an activity or a location) that its annotators mention but that is drawn independently of most visual
content. A captioner can only reproduce that context for images it memorised during training, which is the
member / non-member gap that the attacks of the paper exploit on real data. See ``data/README.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from m4i_utils.core.cache import Artifact, cached
from m4i_utils.core.runtime import rng_for
from m4i_utils.data.records import Corpus, Record

SHAPES = ("circle", "square", "triangle", "ring", "bar")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "green": (40, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (230, 210, 40),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
    "orange": (240, 130, 20),
    "purple": (130, 40, 160),
}
POSITIONS = ("left", "middle", "right")


@dataclass(frozen=True)
class WorldSpec:
    """Vocabulary and image statistics of one world."""

    name: str
    nouns: tuple[str, ...]  # one noun per shape in SHAPES
    backgrounds: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]]  # phrase -> (top, bottom) RGB
    background_style: str  # "flat" | "gradient" | "horizon"
    hidden: dict[str, tuple[str, ...]]  # hidden-context slot -> values
    styles: tuple[str, ...]  # 5 caption templates, one per annotator; "[a|b]" = a wording chosen per caption
    position_words: dict[str, str]
    size_words: tuple[str, str]  # small, large
    noise: float


WORLDS: dict[str, WorldSpec] = {
    # MSCOCO stand-in: everyday objects on indoor surfaces, plain descriptive captions.
    "synth_coco": WorldSpec(
        name="synth_coco",
        nouns=("ball", "box", "cone", "plate", "bench"),
        backgrounds={
            "a wooden table": ((150, 100, 60), (130, 85, 50)),
            "a gray floor": ((120, 120, 120), (110, 110, 110)),
            "a white counter": ((225, 225, 215), (210, 210, 200)),
            "a tiled wall": ((90, 130, 140), (80, 120, 130)),
        },
        background_style="flat",
        hidden={
            "place": ("kitchen", "office", "garage", "classroom", "cafe", "station", "market", "hallway"),
            "time": (
                "in the morning",
                "at night",
                "at noon",
                "in the evening",
                "on a weekend",
                "after lunch",
            ),
            "owner": ("a student", "a chef", "a janitor", "a child", "a tourist", "a mechanic"),
        },
        styles=(
            "a {size} {color} {noun} [on|lying on|placed on|resting on] {bg} in the {place}",
            "[there is|we can see|you can see|this shows] a {color} {noun} and a {color2} {noun2} {time}",
            "[a photo|a picture|an image|a snapshot|a close up] of a {color} {noun} {pos} "
            "[of the picture|of the frame|] in a {place}",
            "{owner} [left|put|placed|forgot|dropped] a {color} {noun} on {bg} {time}",
            "a {color} {noun} [sits next to|is next to|is beside|lies near|stands by] a {color2} {noun2} "
            "in the {place} {time}",
        ),
        position_words={
            "left": "[on|at|to] the left",
            "middle": "in the [middle|centre]",
            "right": "[on|at|to] the right",
        },
        size_words=("small", "large"),
        noise=6.0,
    ),
    # Flickr8k stand-in: people and animals outdoors doing things, action-centred captions.
    "synth_flickr": WorldSpec(
        name="synth_flickr",
        nouns=("dog", "child", "man", "woman", "bike"),
        backgrounds={
            "a grassy park": ((110, 170, 90), (60, 120, 40)),
            "a sandy beach": ((150, 200, 240), (220, 200, 150)),
            "a busy street": ((170, 170, 180), (90, 90, 95)),
            "a snowy hill": ((200, 210, 230), (245, 245, 250)),
        },
        background_style="gradient",
        hidden={
            "activity": (
                "running",
                "jumping",
                "playing",
                "waiting",
                "walking",
                "smiling",
                "laughing",
                "resting",
            ),
            "time": ("on a sunny day", "at sunset", "in the rain", "during a festival", "in the summer"),
            "companion": ("with a friend", "with his family", "alone", "with a ball", "with two dogs"),
        },
        styles=(
            "a {noun} [in|dressed in|in a] {color} [is|seems to be|is seen] {activity} [in|on|at] {bg}",
            "a {size} {noun} [wearing|with|in] {color} is {activity} {companion}",
            "the {noun} is {activity} [next to|beside|near|behind] a {color2} {noun2} {time}",
            "a {color} {noun} [|is|was] {activity} {companion} {time}",
            "[two people :|a pair :|two of them :] a {noun} and a {noun2} [|are] {activity} [in|on] {bg}",
        ),
        position_words={
            "left": "[at|on] the left",
            "middle": "in the [centre|middle]",
            "right": "[at|on] the right",
        },
        size_words=("little", "big"),
        noise=10.0,
    ),
    # IAPR TC-12 stand-in: landscapes and buildings, terse clause lists with locations.
    "synth_iapr": WorldSpec(
        name="synth_iapr",
        nouns=("tree", "house", "mountain", "lake", "wall"),
        backgrounds={
            "blue sky and green grass": ((80, 140, 230), (70, 150, 60)),
            "cloudy sky and brown field": ((170, 175, 185), (140, 110, 70)),
            "orange sunset over dark ground": ((240, 150, 70), (60, 50, 40)),
            "grey sky over snow": ((150, 150, 160), (235, 235, 240)),
        },
        background_style="horizon",
        hidden={
            "location": ("bolivia", "peru", "ecuador", "chile", "argentina", "colombia", "brazil", "uruguay"),
            "time": ("in march", "in winter", "in april", "in spring", "in october"),
            "detail": ("tourists in the foreground", "a road in front", "a fence behind", "people walking"),
        },
        styles=(
            "a {color} {noun} {pos} ; {bg} ; {location}",
            "[view of|a view of|picture of|photo of] a {size} {noun} and a {color2} {noun2} "
            "in {location} {time}",
            "{color} {noun} [with|and|behind] {detail} ; {bg}",
            "[landscape|scenery|a landscape|panorama] with a {noun} in {location} ; {detail}",
            "a {noun} {pos} and a {noun2} ; {bg} {time}",
        ),
        position_words={
            "left": "[on|at] the left",
            "middle": "in the [centre|middle]",
            "right": "[on|at] the right",
        },
        size_words=("small", "huge"),
        noise=12.0,
    ),
}


def _background(spec: WorldSpec, bg: str, size: int, rng: np.random.Generator) -> np.ndarray:
    top, bottom = (np.array(c, dtype=np.float32) for c in spec.backgrounds[bg])
    top = top + rng.normal(0, 12, 3)
    bottom = bottom + rng.normal(0, 12, 3)
    if spec.background_style == "flat":
        img = np.broadcast_to(top, (size, size, 3)).copy()
    elif spec.background_style == "gradient":
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        img = np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3)).copy()
        blobs = rng.normal(0, 18, (4, 4, 1)).astype(np.float32)
        img += np.kron(blobs, np.ones((size // 4 + 1, size // 4 + 1, 1), np.float32))[:size, :size]
    else:  # horizon
        horizon = int(size * rng.uniform(0.35, 0.6))
        img = np.empty((size, size, 3), np.float32)
        img[:horizon] = top
        img[horizon:] = bottom
        img[horizon:] += rng.normal(0, spec.noise, (size - horizon, size, 3))
    return img + rng.normal(0, spec.noise * 0.5, img.shape).astype(np.float32)


def _draw(img: np.ndarray, shape: str, cx: float, cy: float, r: float, color: np.ndarray) -> None:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        mask = dx**2 + dy**2 < r**2
    elif shape == "square":
        mask = (np.abs(dx) < r * 0.85) & (np.abs(dy) < r * 0.85)
    elif shape == "triangle":
        mask = (dy > -r) & (dy < r) & (np.abs(dx) < (dy + r) / 2)
    elif shape == "ring":
        d2 = dx**2 + dy**2
        mask = (d2 < r**2) & (d2 > (0.55 * r) ** 2)
    else:  # bar
        mask = (np.abs(dx) < 1.6 * r) & (np.abs(dy) < 0.45 * r)
    img[mask] = color


def _sample_pair(spec: WorldSpec, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str], dict]:
    """One image, its 5 captions and its latent description."""
    bg = list(spec.backgrounds)[rng.integers(len(spec.backgrounds))]
    img = _background(spec, bg, size, rng)
    n_obj = int(rng.choice([2, 3], p=[0.6, 0.4]))
    slots = rng.permutation(3)[:n_obj]
    objects = []
    for slot in slots:
        shape = int(rng.integers(len(SHAPES)))
        color = list(COLORS)[rng.integers(len(COLORS))]
        large = bool(rng.random() < 0.5)
        r = size * (rng.uniform(0.15, 0.2) if large else rng.uniform(0.08, 0.11))
        cx = size * (0.2 + 0.3 * slot) + rng.normal(0, size * 0.03)
        cy = size * rng.uniform(0.35, 0.75)
        rgb = np.clip(np.array(COLORS[color], np.float32) + rng.normal(0, 15, 3), 0, 255)
        _draw(img, SHAPES[shape], cx, cy, r, rgb)
        objects.append({"noun": spec.nouns[shape], "color": color, "large": large, "pos": POSITIONS[slot]})
    # Objects sorted by area, so that "the main object" is the largest one, as annotators describe it.
    objects.sort(key=lambda o: (not o["large"], POSITIONS.index(o["pos"])))
    hidden = {slot: values[rng.integers(len(values))] for slot, values in spec.hidden.items()}
    captions = [_caption(spec, style, bg, objects, hidden, rng) for style in spec.styles]
    order = rng.permutation(len(captions))  # annotators are not listed in a fixed order
    image = np.clip(img, 0, 255).astype(np.uint8)
    return image, [captions[i] for i in order], {"background": bg, "objects": objects, "hidden": hidden}


_CHOICE = re.compile(r"\[([^\[\]]*)\]")


def _choose_phrases(text: str, rng: np.random.Generator) -> str:
    """Replace every ``[a|b|...]`` in a template by one alternative (possibly empty), uniformly at random.

    Annotators word the same content differently; without this each template's wording is fixed and a
    constant caption matches one reference of every image word for word.
    """
    return _CHOICE.sub(lambda m: m.group(1).split("|")[int(rng.integers(m.group(1).count("|") + 1))], text)


def _caption(
    spec: WorldSpec,
    style: str,
    bg: str,
    objects: list[dict],
    hidden: dict[str, str],
    rng: np.random.Generator,
) -> str:
    main = objects[0]
    other = objects[1]
    words = {
        "noun": main["noun"],
        "color": main["color"],
        "size": spec.size_words[int(main["large"])],
        "pos": spec.position_words[main["pos"]],
        "noun2": other["noun"],
        "color2": other["color"],
        "bg": bg,
        **hidden,
    }
    text = _choose_phrases(style.format(**words), rng)
    # Annotators sometimes add or drop detail: one optional hidden fact appended, articles varied.
    if rng.random() < 0.3:
        slot = list(spec.hidden)[rng.integers(len(spec.hidden))]
        if hidden[slot] not in text:
            text = f"{text} , {hidden[slot]}"
    return re.sub(r"\ba (?=[aeiou])", "an ", " ".join(text.split()))


def generate_world(name: str, n_pairs: int, image_size: int, seed: int) -> tuple[np.ndarray, list, list]:
    """Generate ``n_pairs`` images (uint8, ``n x size x size x 3``), their captions and latent descriptions.

    Deterministic for ``(name, n_pairs, image_size, seed)``.
    """
    if name not in WORLDS:
        raise ValueError(f"unknown synthetic world {name!r}; choose from {sorted(WORLDS)}")
    spec = WORLDS[name]
    rng = rng_for(seed, "synthetic_world", name)
    images = np.empty((n_pairs, image_size, image_size, 3), np.uint8)
    captions, latents = [], []
    for i in tqdm(range(n_pairs), desc=f"generate {name}", leave=False, mininterval=1.0):
        images[i], caps, latent = _sample_pair(spec, image_size, rng)
        captions.append(caps)
        latents.append(latent)
    return images, captions, latents


def world_artifact(cache_dir: str | Path, name: str, n_pairs: int, image_size: int, seed: int) -> Artifact:
    """The cached world (``images.npy``, ``captions.json``, ``latents.json``)."""

    def build(out: Path) -> None:
        images, captions, latents = generate_world(name, n_pairs, image_size, seed)
        np.save(out / "images.npy", images)
        (out / "captions.json").write_text(json.dumps(captions))
        (out / "latents.json").write_text(json.dumps(latents))

    params = {"name": name, "n_pairs": n_pairs, "image_size": image_size, "seed": seed}
    return cached(cache_dir, "synthetic_world", params, build)


def load_world(cache_dir: str | Path, name: str, n_pairs: int, image_size: int, seed: int) -> Corpus:
    """A synthetic world as a :class:`Corpus` (ids ``<name>_<index>``), generated on first use and cached."""
    art = world_artifact(cache_dir, name, n_pairs, image_size, seed)
    images = np.load(art.file("images.npy"), mmap_mode="r")
    captions = json.loads(art.file("captions.json").read_text())
    records = tuple(
        Record(f"{name}_{i:06d}", np.asarray(images[i]), tuple(caps)) for i, caps in enumerate(captions)
    )
    return Corpus(name, records)
