"""A procedural faces world: the embedded default data of identity inference on CLIP-like models
(notebook 11).

"Does CLIP know my face?" (Hintersdorf et al., JAIR 2024) asks whether a person's images were used to train a
CLIP-like model, by showing it *other* images of that person and asking which of many names fits best. That
needs many identities, several images per identity that differ in pose and conditions but not in the face,
and names. This module draws them offline:

* **Identities** (:func:`make_identities`): a latent appearance per person (face shape, skin tone, eye
  colour and size, brows, nose, mouth, ears, hair colour and style, glasses, beard) and a unique full name
  built from the first- and last-name pools :data:`FIRST_NAMES` x :data:`LAST_NAMES`.
* **Images** (:func:`render_face`): the identity's face rendered at ``2 * size`` and downsampled to ``size``
  px, with per-image nuisance drawn from the image's own seed: shift, scale, small rotation, lighting (gain
  and offset), background clutter and, with probability ``occluder_p``, an occluding bar.

Everything is seeded (:func:`m4i_utils.core.runtime.rng_for`), so the same seed gives the same people,
names and pixels. See ``data/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from m4i_utils.core.runtime import rng_for

FIRST_NAMES = (
    *("Ada", "Alan", "Amara", "Anton", "Aria", "Bruno", "Carla", "Cyrus", "Dalia", "Dmitri", "Elena", "Emil"),
    *("Farah", "Felix", "Greta", "Hamid", "Hana", "Igor", "Ines", "Jonas", "Julia", "Kenji", "Kira", "Lars"),
    *(
        "Leila",
        "Luca",
        "Maya",
        "Milan",
        "Nadia",
        "Nikos",
        "Noor",
        "Oskar",
        "Paula",
        "Pedro",
        "Priya",
        "Rafael",
    ),
    *(
        "Rosa",
        "Samir",
        "Sofia",
        "Tariq",
        "Tessa",
        "Tomas",
        "Uma",
        "Viktor",
        "Wanda",
        "Yusuf",
        "Zara",
        "Zoltan",
    ),
)
LAST_NAMES = (
    *("Abbott", "Alvarez", "Bauer", "Becker", "Castillo", "Chen", "Costa", "Dubois", "Eriksen", "Fischer"),
    *("Garcia", "Haddad", "Hansen", "Ito", "Jansen", "Kaur", "Kowalski", "Larsen", "Lopez", "Moreau"),
    *("Nakamura", "Novak", "Okafor", "Olsen", "Park", "Petrov", "Quinn", "Rossi", "Sato", "Schmidt"),
    *("Silva", "Sousa", "Tanaka", "Torres", "Ueda", "Varga", "Weber", "Wolff", "Yilmaz", "Zhang"),
)
SKIN = ((255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 90), (141, 85, 54), (94, 58, 38))
HAIR = {
    "black": (25, 20, 18),
    "brown": (95, 60, 35),
    "blond": (225, 195, 120),
    "red": (170, 70, 35),
    "grey": (150, 150, 150),
    "white": (235, 235, 230),
}
EYES = {"brown": (90, 55, 30), "blue": (60, 110, 190), "green": (70, 130, 70), "grey": (120, 125, 130)}
HAIR_STYLES = ("short", "long", "bald", "bun", "fringe", "curly")
GLASSES = ("none", "none", "none", "round", "square")
BEARDS = ("none", "none", "none", "stubble", "full")


@dataclass(frozen=True)
class Identity:
    """One synthetic person: a unique name and the latent appearance every image of them shares."""

    id: str
    first: str
    last: str
    traits: dict = field(hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


def make_identities(n: int, seed: int, label: str = "faces") -> list[Identity]:
    """``n`` identities with distinct full names and independently drawn appearances.

    Raises:
        ValueError: ``n`` exceeds the number of distinct names (``len(FIRST_NAMES) * len(LAST_NAMES)``).
    """
    limit = len(FIRST_NAMES) * len(LAST_NAMES)
    if not 0 < n <= limit:
        raise ValueError(f"the faces world holds 1 to {limit} identities (distinct names), got n={n}")
    rng = rng_for(seed, "face_identities", label)
    names = rng.choice(limit, n, replace=False)
    out = []
    for i, k in enumerate(names):
        first, last = FIRST_NAMES[k // len(LAST_NAMES)], LAST_NAMES[k % len(LAST_NAMES)]
        traits = {
            "face_aspect": float(rng.uniform(0.68, 0.92)),  # width / height of the face ellipse
            "face_height": float(rng.uniform(0.50, 0.62)),  # of the canvas
            "skin": int(rng.integers(len(SKIN))),
            "skin_jitter": rng.integers(-12, 13, 3).tolist(),
            "eye": str(rng.choice(list(EYES))),
            "eye_size": float(rng.uniform(0.035, 0.060)),
            "eye_gap": float(rng.uniform(0.16, 0.24)),
            "eye_height": float(rng.uniform(0.40, 0.48)),
            "brow": float(rng.uniform(0.008, 0.028)),  # thickness
            "brow_tilt": float(rng.uniform(-0.03, 0.03)),
            "nose_len": float(rng.uniform(0.08, 0.16)),
            "nose_w": float(rng.uniform(0.03, 0.07)),
            "mouth_w": float(rng.uniform(0.10, 0.22)),
            "mouth_curve": float(rng.uniform(-0.03, 0.05)),
            "lip": rng.integers(120, 200, 3).tolist(),
            "ear": float(rng.uniform(0.04, 0.08)),
            "hair": str(rng.choice(list(HAIR))),
            "hair_style": str(rng.choice(HAIR_STYLES)),
            "glasses": str(rng.choice(GLASSES)),
            "beard": str(rng.choice(BEARDS)),
        }
        out.append(Identity(f"p{i:04d}", first, last, traits))
    return out


def _face_color(traits: dict) -> tuple[int, int, int]:
    base = np.array(SKIN[traits["skin"]]) + np.array(traits["skin_jitter"])
    return tuple(int(v) for v in np.clip(base, 0, 255))


def _draw_face(draw: ImageDraw.ImageDraw, t: dict, s: int) -> None:
    """Draw the face of traits ``t`` centred on an ``s`` x ``s`` canvas (sizes are fractions of ``s``)."""
    cx, cy = s / 2, s * 0.52
    h = t["face_height"] * s
    w = h * t["face_aspect"]
    skin, hair = _face_color(t), HAIR[t["hair"]]
    style = t["hair_style"]
    if style == "long":  # hair behind the head, down to the shoulders
        draw.rectangle([cx - w * 0.62, cy - h * 0.45, cx + w * 0.62, cy + h * 0.55], fill=hair)
    ear = t["ear"] * s
    for side in (-1, 1):
        draw.ellipse(
            [cx + side * w / 2 - ear, cy - ear * 1.2, cx + side * w / 2 + ear, cy + ear * 1.2], fill=skin
        )
    draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=skin)
    top = cy - h / 2
    if style in ("short", "fringe", "curly", "bun", "long"):
        draw.chord([cx - w * 0.54, top - h * 0.08, cx + w * 0.54, top + h * 0.55], 180, 360, fill=hair)
    if style == "fringe":
        draw.rectangle([cx - w * 0.42, top + h * 0.1, cx + w * 0.42, top + h * 0.24], fill=hair)
    if style == "curly":
        for k in range(7):
            x = cx - w * 0.5 + k * w / 6
            draw.ellipse([x - w * 0.1, top - h * 0.1, x + w * 0.1, top + h * 0.12], fill=hair)
    if style == "bun":
        draw.ellipse([cx - w * 0.18, top - h * 0.28, cx + w * 0.18, top + h * 0.05], fill=hair)
    eye_y, gap, r = t["eye_height"] * s + (cy - s * 0.52), t["eye_gap"] * s, t["eye_size"] * s
    brow = max(1, int(t["brow"] * s))
    for side in (-1, 1):
        ex = cx + side * gap / 2
        draw.ellipse([ex - r * 1.4, eye_y - r, ex + r * 1.4, eye_y + r], fill=(245, 245, 245))
        draw.ellipse([ex - r * 0.7, eye_y - r * 0.7, ex + r * 0.7, eye_y + r * 0.7], fill=EYES[t["eye"]])
        tilt = side * t["brow_tilt"] * s
        draw.line([ex - r * 1.5, eye_y - r * 2.0 + tilt, ex + r * 1.5, eye_y - r * 2.0 - tilt], fill=hair,
                  width=brow)  # fmt: skip
    if t["glasses"] != "none":
        frame = (30, 30, 30)
        for side in (-1, 1):
            ex = cx + side * gap / 2
            box = [ex - r * 2.0, eye_y - r * 1.6, ex + r * 2.0, eye_y + r * 1.6]
            (draw.ellipse if t["glasses"] == "round" else draw.rectangle)(
                box, outline=frame, width=max(1, s // 64)
            )
        draw.line(
            [cx - gap / 2 + r * 2.0, eye_y, cx + gap / 2 - r * 2.0, eye_y], fill=frame, width=max(1, s // 64)
        )
    nose_top, nose_len, nose_w = eye_y + r, t["nose_len"] * s, t["nose_w"] * s
    shade = tuple(max(0, c - 40) for c in skin)
    draw.polygon(
        [(cx, nose_top), (cx - nose_w, nose_top + nose_len), (cx + nose_w, nose_top + nose_len)], fill=shade
    )
    mouth_y, mw, curve = nose_top + nose_len + s * 0.06, t["mouth_w"] * s, t["mouth_curve"] * s
    if t["beard"] == "full":
        draw.chord([cx - w / 2, cy - h * 0.05, cx + w / 2, cy + h / 2], 0, 180, fill=hair)
    elif t["beard"] == "stubble":
        draw.chord(
            [cx - w * 0.45, cy, cx + w * 0.45, cy + h / 2],
            0,
            180,
            fill=tuple((np.array(skin) * 0.75).astype(int)),
        )
    lip = tuple(t["lip"])
    draw.line(
        [(cx - mw / 2, mouth_y), (cx, mouth_y + curve), (cx + mw / 2, mouth_y)],
        fill=lip,
        width=max(2, s // 40),
    )


def render_face(
    identity: Identity, seed: int, index: int, size: int = 64, occluder_p: float = 0.2
) -> np.ndarray:
    """Image ``index`` of ``identity``: ``size`` x ``size`` x 3 uint8, its nuisance seeded by ``(seed,
    identity, index)`` (see the module docstring)."""
    rng = rng_for(seed, "face_image", identity.id, index)
    s = 2 * size
    top, bottom = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    ramp = np.linspace(0, 1, s)[:, None, None]
    canvas = (top * (1 - ramp) + bottom * ramp).repeat(s, axis=1).astype(np.uint8)
    img = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 7))):  # background clutter
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(s * 0.04, s * 0.15)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=color)
    face = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    _draw_face(ImageDraw.Draw(face), identity.traits, s)
    scale = rng.uniform(0.88, 1.12)
    face = face.resize((int(s * scale), int(s * scale)), Image.BILINEAR).rotate(
        float(rng.uniform(-12, 12)), resample=Image.BILINEAR
    )
    dx, dy = rng.integers(-s // 12, s // 12 + 1, 2)
    img.paste(face, (int((s - face.width) / 2 + dx), int((s - face.height) / 2 + dy)), face)
    if rng.random() < occluder_p:  # an occluding bar across part of the face
        draw = ImageDraw.Draw(img)
        y = rng.uniform(s * 0.3, s * 0.8)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.rectangle([rng.uniform(0, s * 0.4), y, rng.uniform(s * 0.6, s), y + s * rng.uniform(0.06, 0.14)],
                       fill=color)  # fmt: skip
    arr = np.asarray(img.resize((size, size), Image.LANCZOS), dtype=np.float64)
    gain, offset = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
    return np.clip(arr * gain + offset, 0, 255).astype(np.uint8)
