"""Medical report generation data (M4I appendix G): R2Gen annotations, tokenisation, a synthetic CXR world.

Three sources of (chest radiograph, report) studies, all returned as a :class:`MedCorpus`:

* :func:`load_r2gen_annotation`: the R2Gen ``annotation.json`` format (``{"train": [...], "val": [...],
  "test": [...]}``, entries ``{"id", "report", "image_path": [...], "split"}``; IU X-Ray has 2 views per
  study, MIMIC-CXR 1). Entries under a non-standard split key that carry their own ``"split"`` are
  accepted with a warning (the public IU copy names its test key ``"    "``); anything else malformed raises
  :class:`~m4i_utils.data.records.DataError` naming the file and the entry.
* :func:`synthetic_world`: the embedded default. Patients (1-3 studies each, with patient-level anatomy and
  chronic findings) get findings (cardiomegaly, effusions, opacities, nodules, granulomas, pneumothorax,
  devices); a grey-scale frontal radiograph is rendered from the findings (:func:`render_image`) and a
  multi-sentence report is written by one of five "radiologists" (one per reading site, whose burnt-in
  marker the image shows) with their own phrasing and sentence order,
  plus content not visible in the image (comparison with prior studies, degenerative spine remarks,
  indication-like phrases). Findings drive both image and report, so a model can learn the task and memorise
  the unpredictable parts of its training reports.
* :func:`iu_rendered_corpus`: REAL IU X-Ray report text (reports only, no images are available here) paired
  with images RENDERED from the findings each report states (:func:`parse_findings`, a keyword + negation
  parser). The language is real; the images are synthetic.

Tokenisation follows R2Gen (:func:`clean_report`): lower-case, strip list numbering and punctuation, keep
sentence ends as ``"."`` tokens; the vocabulary is the train split's tokens with count >= threshold (IU 3,
MIMIC 10) and reports are cut at ``max_len`` tokens (IU 60, MIMIC 100).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m4i_utils.core.runtime import rng_for
from m4i_utils.data.records import DataError

STANDARD_SPLITS = ("train", "val", "test")
# Splits load_r2gen_annotation requires (DataError when absent): all three, as the R2Gen format has them
REQUIRED_SPLITS = STANDARD_SPLITS
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
IU_SUBDIR = Path("iu_xray_reports_only") / "iu_xray" / "annotation.json"

# ------------------------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class Study:
    """One imaging study: id, report, relative image paths, R2Gen split and patient id."""

    id: str
    report: str
    image_path: tuple[str, ...]
    split: str
    patient: str


def load_r2gen_annotation(path: str | Path) -> list[Study]:
    """Read an R2Gen ``annotation.json`` into studies (docs/paper_notes.md, 'M4I: medical report generation').

    Args:
        path: the JSON file.
    Returns:
        Studies in file order; ``patient`` is the study id (R2Gen files carry no patient ids).
    Raises:
        DataError: unreadable JSON, not a dict of lists, an entry missing ``id`` / ``report`` /
            ``image_path`` or with a wrong type, an entry under a non-standard key without its own
            ``split``, or a duplicate id; the message names the file and the entry. Also a required split
            (:data:`REQUIRED_SPLITS`: ``train``, ``val``, ``test``) with no entries: its key is absent (or
            empty) and no entry under a non-standard key carries it as its own ``"split"`` (the public IU
            copy's test key ``"    "`` does); the message names the file and the missing key.
    Warns:
        UserWarning: entries under a non-standard split key (e.g. ``"    "``) that carry a standard
            ``"split"`` field; they are kept under that field's split. Also a missing ``val`` split.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found (R2Gen format, see docs/paper_notes.md)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{'train': [...], ...}}, got {type(data).__name__}")
    studies, seen = [], set()
    for key, entries in data.items():
        if not isinstance(entries, list):
            raise DataError(f"{path}: split {key!r} must be a list of entries, got {type(entries).__name__}")
        odd_key = key not in STANDARD_SPLITS
        if odd_key and entries:
            warnings.warn(
                f"{path}: non-standard split key {key!r} ({len(entries)} entries); using each entry's own "
                "'split' field",
                UserWarning,
                stacklevel=2,
            )
        for i, e in enumerate(entries):
            where = f"{path}: entry {i} of split {key!r}"
            if not isinstance(e, dict):
                raise DataError(f"{where} is not an object")
            sid = e.get("id")
            where += f" (id {sid!r})"
            if not isinstance(sid, str) or not sid:
                raise DataError(f"{where}: missing or non-string 'id'")
            if not isinstance(e.get("report"), str):
                raise DataError(f"{where}: missing or non-string 'report'")
            paths = e.get("image_path")
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                raise DataError(f"{where}: 'image_path' must be a non-empty list of strings")
            split = e.get("split", None if odd_key else key)
            if split not in STANDARD_SPLITS:
                raise DataError(
                    f"{where}: split key {key!r} is not one of {STANDARD_SPLITS} and the entry's own "
                    f"'split' is {split!r}"
                )
            if sid in seen:
                raise DataError(f"{where}: duplicate id")
            seen.add(sid)
            studies.append(Study(sid, e["report"], tuple(paths), split, sid))
    if not studies:
        raise DataError(f"{path}: no entries")
    present = {s.split for s in studies}
    keys = ", ".join(map(repr, data)) or "none"
    for split in STANDARD_SPLITS:
        if split in present:
            continue
        message = (
            f"{path}: no {split!r} split: key {split!r} is absent or empty (keys: {keys}) and no entry under "
            f"another key has \"split\": {split!r}; the R2Gen format needs 'train', 'val' and 'test' "
            "(docs/paper_notes.md): use the complete annotation.json"
        )
        if split in REQUIRED_SPLITS:
            raise DataError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return studies


# ------------------------------------------------------------------------------------------- tokeniser

_NUMBERING = re.compile(r"(?:(?<=\s)|^)\d+\s*[.)]\s+")
_PUNCT = re.compile(r"[^a-z0-9\s]")


def clean_report(text: str) -> str:
    """R2Gen-style cleaning: lower-case, drop list numbering and punctuation, sentences joined by ``" . "``.

    ``"1. No effusion.  2. Heart size normal."`` -> ``"no effusion . heart size normal ."``
    """
    text = _NUMBERING.sub(" ", text.lower().replace("\n", " "))
    sentences = [s for s in re.split(r"\.+\s+|\.+$", text) if s.strip()]
    cleaned = [" ".join(_PUNCT.sub(" ", s).split()) for s in sentences]
    cleaned = [s for s in cleaned if s]
    return " . ".join(cleaned) + " ." if cleaned else ""


def report_tokens(text: str) -> list[str]:
    """Tokens of :func:`clean_report` (split on white space; ``"."`` marks sentence ends)."""
    return clean_report(text).split()


@dataclass(frozen=True)
class ReportTokenizer:
    """R2Gen vocabulary: ``<pad>``=0, ``<bos>``=1, ``<eos>``=2, ``<unk>``=3, then tokens by -count, token."""

    itos: tuple[str, ...]

    @classmethod
    def build(cls, reports: Iterable[str], threshold: int = 3) -> ReportTokenizer:
        """Tokens of the (train) reports with count >= ``threshold`` (IU 3, MIMIC 10)."""
        counts = Counter(t for r in reports for t in report_tokens(r))
        kept = sorted((t for t, c in counts.items() if c >= threshold), key=lambda t: (-counts[t], t))
        return cls((PAD, BOS, EOS, UNK, *kept))

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def stoi(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.itos)}

    def encode(self, text: str, max_len: int = 60) -> list[int]:
        """``<bos> tokens[:max_len] <eos>`` as ids; unknown tokens -> ``<unk>``."""
        stoi = self.stoi
        return [1] + [stoi.get(t, 3) for t in report_tokens(text)[:max_len]] + [2]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> cleaned report text, stopping at ``<eos>``, dropping special tokens."""
        out = []
        for i in ids:
            i = int(i)
            if i == 2:
                break
            if i > 3:
                out.append(self.itos[i])
        return " ".join(out)

    def batch(self, texts: list[str], max_len: int = 60):
        """Padded id tensor (N x L) of ``texts``."""
        import torch

        seqs = [self.encode(t, max_len) for t in texts]
        out = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
        for k, s in enumerate(seqs):
            out[k, : len(s)] = torch.tensor(s)
        return out


# ------------------------------------------------------------------------------------------- findings

LOCATIONS = ("right upper", "right lower", "left upper", "left lower")
DEVICES = ("none", "pacemaker", "central line", "sternotomy wires")


@dataclass(frozen=True)
class Findings:
    """What a study shows. Sides are the patient's (right = image left, radiological convention)."""

    cardiomegaly: bool = False
    effusion_right: bool = False
    effusion_left: bool = False
    opacity: str | None = None  # one of LOCATIONS
    nodule: str | None = None  # one of LOCATIONS
    granuloma: str | None = None  # calcified granuloma, one of LOCATIONS
    pneumothorax: str | None = None  # "right" | "left"
    device: str = "none"  # one of DEVICES

    def as_dict(self) -> dict:
        return dict(self.__dict__)


_NEG = re.compile(r"\b(no|not|without|negative for|free of|resolved|clear of|removed)\b")
_TERMS = {
    "cardiomegaly": r"cardiomegaly|enlarged heart|heart is enlarged"
    r"|heart size is (?:mildly |moderately )?enlarged|cardiac enlargement|enlarged cardiac"
    r"|enlargement of the cardiac|cardiac silhouette is enlarged",
    "effusion": r"effusion",
    "opacity": r"opacit|consolidation|infiltrate|airspace disease|atelectasis|pneumonia",
    "nodule": r"nodule|mass\b",
    "granuloma": r"granuloma",
    "pneumothorax": r"pneumothora",
    "pacemaker": r"pacemaker|pacer|defibrillator|aicd",
    "central line": r"catheter|central line|picc|port\b|tube",
    "sternotomy wires": r"sternotomy",
}


def _side(sentence: str) -> str | None:
    if "bilateral" in sentence or "both" in sentence or "bases" in sentence:
        return "both"
    has_r, has_l = "right" in sentence, "left" in sentence
    return "right" if has_r and not has_l else "left" if has_l and not has_r else ("both" if has_r else None)


def _location(sentence: str, rng: np.random.Generator) -> str:
    side = _side(sentence)
    side = side if side in ("right", "left") else ("right" if rng.random() < 0.5 else "left")
    zone = "upper" if re.search(r"upper|apex|apical|apices", sentence) else "lower"
    return f"{side} {zone}"


def parse_findings(report: str, seed: int = 0) -> Findings:
    """Findings stated by a free-text report: keyword match per sentence, negated by a preceding cue.

    A term counts as present when it occurs in a sentence and no negation cue (``no``, ``without``,
    ``negative for``, ``free of``, ``resolved``, ...) precedes it in that sentence.
    ``"No pleural effusion"`` -> absent; ``"Cardiomegaly."`` / ``"enlarged heart"`` -> present;
    ``"Small left pleural effusion"`` -> ``effusion_left``. Locations come from ``right`` / ``left`` /
    ``bilateral`` and ``upper`` / ``apical`` (``lower``
    otherwise); a side that is not stated is drawn from ``seed`` and the report (deterministic).

    Args:
        report: the report text.
        seed: seeds the choice of unstated sides.
    Returns:
        The :class:`Findings`.
    """
    rng = rng_for(seed, "parse", hashlib.sha256(report.encode()).hexdigest()[:12])
    found: dict = {}
    for sent in re.split(r"[.;]\s*|\n", report.lower()):
        for name, pattern in _TERMS.items():
            m = re.search(pattern, sent)
            if not m:
                continue
            before = sent[: m.start()]
            if _NEG.search(before) or re.search(
                r"\b(normal|unremarkable|within normal)\b", sent[m.end() :][:20]
            ):
                continue
            if name == "effusion":
                side = _side(sent) or ("right" if rng.random() < 0.5 else "left")
                if side in ("right", "both"):
                    found["effusion_right"] = True
                if side in ("left", "both"):
                    found["effusion_left"] = True
            elif name == "pneumothorax":
                side = _side(sent)
                found["pneumothorax"] = side if side in ("right", "left") else "right"
            elif name in ("opacity", "nodule", "granuloma"):
                found.setdefault(name, _location(sent, rng))
            elif name == "cardiomegaly":
                found["cardiomegaly"] = True
            elif found.get("device", "none") == "none":
                found["device"] = name
    return Findings(**found)


# ------------------------------------------------------------------------------------------- renderer


@dataclass(frozen=True)
class Anatomy:
    """Patient-level appearance: body width, lung size, rib spacing/phase, heart base size, brightness."""

    body: float
    lung_w: float
    lung_h: float
    rib_period: float
    rib_phase: float
    heart: float
    bright: float
    tilt: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Anatomy:
        return cls(
            body=rng.uniform(0.78, 0.95),
            lung_w=rng.uniform(0.17, 0.22),
            lung_h=rng.uniform(0.28, 0.36),
            rib_period=rng.uniform(0.075, 0.11),
            rib_phase=rng.uniform(0, 2 * np.pi),
            heart=rng.uniform(0.13, 0.16),
            bright=rng.uniform(0.85, 1.15),
            tilt=rng.uniform(-0.04, 0.04),
        )


_ZONE = {"upper": -0.12, "lower": 0.12}


def _center(loc: str) -> tuple[float, float]:
    side, zone = loc.split()
    return (-0.22 if side == "right" else 0.22), _ZONE[zone]  # patient's right = image left


# Burnt-in marker of each reading site (centre x, centre y, half-width, half-height in image units): where
# the site's scanner prints its laterality / site label. Site s is read by radiologist style s.
SITE_MARKERS: tuple[tuple[float, float, float, float], ...] = (
    (-0.40, -0.42, 0.05, 0.03),
    (0.40, -0.42, 0.05, 0.03),
    (-0.40, 0.42, 0.03, 0.05),
    (0.40, 0.42, 0.03, 0.05),
    (0.0, -0.45, 0.07, 0.025),
)


def render_image(
    f: Findings, a: Anatomy, rng: np.random.Generator, size: int = 64, site: int | None = None
) -> np.ndarray:
    """A grey-scale frontal chest radiograph (``size`` x ``size`` uint8) of findings ``f`` on anatomy ``a``.

    Bright = dense (bone, heart, fluid), dark = air (lungs). Patient's right is on the image left. ``site``
    (0-4) burns in that reading site's marker (:data:`SITE_MARKERS`), as real scanners print laterality and
    site labels that a model can read (Zech et al. 2018 found CXR models recognise the hospital from them);
    ``None`` draws none.
    """
    y, x = np.mgrid[-0.5 : 0.5 : size * 1j, -0.5 : 0.5 : size * 1j]
    x = x + a.tilt * y + rng.normal(0, 0.01)
    y = y + rng.normal(0, 0.01)
    img = 0.05 + 0.45 * ((x / (a.body / 2)) ** 2 + (y / 0.62) ** 2 < 1)  # soft tissue
    lungs = np.zeros_like(img, dtype=bool)
    for cx in (-0.2, 0.2):
        lungs |= ((x - cx) / a.lung_w) ** 2 + ((y + 0.02) / a.lung_h) ** 2 < 1
    img = np.where(lungs, 0.15, img)
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (y + 0.6 * x**2) / a.rib_period + a.rib_phase)
    img = img + lungs * 0.12 * ribs**4
    img = img + 0.35 * (np.abs(x) < 0.04) * (np.abs(y) < 0.48)  # spine / mediastinum
    h = a.heart * (1.45 if f.cardiomegaly else 1.0)
    img = np.maximum(img, 0.62 * ((((x - 0.05) / (h * 1.1)) ** 2 + ((y - 0.16) / (h * 0.85)) ** 2) < 1))
    for side, on in (("right", f.effusion_right), ("left", f.effusion_left)):
        if on:
            cx = -0.2 if side == "right" else 0.2
            img = np.where(lungs & (np.sign(x) == np.sign(cx)) & (y > 0.14 + 0.25 * np.abs(x - cx)), 0.6, img)
    if f.pneumothorax:
        cx = -0.2 if f.pneumothorax == "right" else 0.2
        img = np.where(((x - cx) / a.lung_w) ** 2 + ((y + 0.2) / 0.12) ** 2 < 1, 0.02, img)
    if f.opacity:
        cx, cy = _center(f.opacity)
        img = img + 0.35 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 0.06**2)) * lungs
    if f.nodule:
        cx, cy = _center(f.nodule)
        img = img + 0.5 * ((x - cx - 0.05) ** 2 + (y - cy + 0.04) ** 2 < 0.025**2)
    if f.granuloma:
        cx, cy = _center(f.granuloma)
        img = img + 0.8 * ((x - cx + 0.04) ** 2 + (y - cy - 0.03) ** 2 < 0.014**2)
    if f.device == "pacemaker":
        img = np.where((np.abs(x - 0.25) < 0.06) & (np.abs(y + 0.33) < 0.035), 1.0, img)
        img = img + 0.5 * (np.abs(y + 0.33 - 1.2 * (x - 0.25)) < 0.012) * (x > 0.02) * (x < 0.25)
    elif f.device == "central line":
        img = img + 0.5 * (np.abs(x + 0.12 + 0.3 * (y + 0.4) ** 2) < 0.01) * (y > -0.45) * (y < 0.0)
    elif f.device == "sternotomy wires":
        for cy in (-0.2, -0.08, 0.04, 0.16):
            img = img + 0.6 * ((x**2 + (y - cy) ** 2 < 0.022**2) & (x**2 + (y - cy) ** 2 > 0.012**2))
    if site is not None:
        cx, cy, hw, hh = SITE_MARKERS[site]
        img = np.where((np.abs(x - cx) < hw) & (np.abs(y - cy) < hh), 1.0 / a.bright, img)
    img = img * a.bright + rng.normal(0, 0.06, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- reports

_STYLES: tuple[dict[str, str], ...] = (
    {  # 0: terse
        "heart_ok": "Heart size normal.",
        "heart_big": "Cardiomegaly.",
        "eff_none": "No pleural effusion or pneumothorax.",
        "eff": "{side} pleural effusion.",
        "op": "{loc} lobe airspace opacity.",
        "lungs_clear": "Lungs are clear.",
        "nod": "{loc} lobe nodule.",
        "gran": "Calcified granuloma in the {loc} lobe.",
        "ptx": "{side} pneumothorax.",
        "dev": "{device} in place.",
        "imp_ok": "No acute cardiopulmonary abnormality.",
        "imp": "Findings as above.",
    },
    {  # 1: full sentences
        "heart_ok": "The heart is normal in size.",
        "heart_big": "The heart is enlarged.",
        "eff_none": "There is no pleural effusion or pneumothorax.",
        "eff": "There is a small {side} pleural effusion.",
        "op": "There is focal airspace opacity in the {loc} lobe.",
        "lungs_clear": "The lungs are clear without focal consolidation.",
        "nod": "A {loc} lobe nodule is noted.",
        "gran": "There is a calcified granuloma in the {loc} lobe.",
        "ptx": "There is a {side} pneumothorax.",
        "dev": "A {device} is present.",
        "imp_ok": "No acute disease.",
        "imp": "Abnormal chest as described.",
    },
    {  # 2: silhouette wording
        "heart_ok": "The cardiomediastinal silhouette is within normal limits.",
        "heart_big": "The cardiac silhouette is enlarged.",
        "eff_none": "No pneumothorax or pleural effusion is seen.",
        "eff": "Blunting of the {side} costophrenic angle consistent with effusion.",
        "op": "Patchy opacity in the {loc} lung zone.",
        "lungs_clear": "The lungs are free of focal airspace disease.",
        "nod": "Nodular density in the {loc} lung.",
        "gran": "Stable calcified granuloma {loc} lung.",
        "ptx": "Small {side} apical pneumothorax.",
        "dev": "Interval placement of a {device}.",
        "imp_ok": "No acute cardiopulmonary process.",
        "imp": "Positive findings as stated.",
    },
    {  # 3: numbered impression style
        "heart_ok": "Normal heart size and mediastinal contours.",
        "heart_big": "Enlarged heart size.",
        "eff_none": "No effusion. No pneumothorax.",
        "eff": "{side} effusion.",
        "op": "{loc} lobe consolidation.",
        "lungs_clear": "Clear lungs.",
        "nod": "{loc} pulmonary nodule measuring XXXX cm.",
        "gran": "{loc} calcified granuloma.",
        "ptx": "{side} pneumothorax is present.",
        "dev": "{device} unchanged in position.",
        "imp_ok": "Negative chest.",
        "imp": "See findings.",
    },
    {  # 4: hedged
        "heart_ok": "Heart size and pulmonary vascularity appear within normal limits.",
        "heart_big": "Mild cardiomegaly is present.",
        "eff_none": "No definite pleural effusion or pneumothorax.",
        "eff": "Probable small {side} pleural effusion.",
        "op": "Possible {loc} lobe infiltrate.",
        "lungs_clear": "No focal consolidation is identified.",
        "nod": "Questionable {loc} lobe nodule, recommend ct.",
        "gran": "Probable calcified granuloma in the {loc} lobe.",
        "ptx": "Possible small {side} pneumothorax.",
        "dev": "{device} noted.",
        "imp_ok": "No acute findings.",
        "imp": "Abnormal study, see above.",
    },
)
_EXTRAS = (  # not visible in the image: the memorisable part
    "Degenerative changes of the thoracic spine.",
    "Osseous structures are intact.",
    "Mild degenerative changes of the spine.",
    "Visualized osseous structures are unremarkable.",
    "Old healed right rib fracture.",
    "Old healed left rib fracture.",
    "Mild hyperinflation of the lungs.",
    "Surgical clips in the upper abdomen.",
    "Low lung volumes.",
    "Deep inspiration.",
    "XXXX sternotomy changes are not seen.",
    "Mild tortuosity of the thoracic aorta.",
)
_COMPARE = (
    "Comparison is made to XXXX prior study.",
    "Compared to the previous exam, there is no significant change.",
    "Stable appearance compared with the prior radiograph.",
    "Since the prior study the findings are similar.",
)
_FIRST = ("No prior studies for comparison.", "There are no prior examinations.", "")


def write_report(f: Findings, style: int, rng: np.random.Generator, study_index: int) -> str:
    """A multi-sentence report of ``f`` in radiologist ``style`` (0-4), with unpredictable extras.

    ``study_index`` > 0 (a follow-up) adds a comparison statement; the first study may say there is no prior.
    """
    s = _STYLES[style]
    lines = [s["heart_big"] if f.cardiomegaly else s["heart_ok"]]
    lung = []
    if f.opacity:
        lung.append(s["op"].format(loc=f.opacity))
    if f.nodule:
        lung.append(s["nod"].format(loc=f.nodule))
    if f.granuloma:
        lung.append(s["gran"].format(loc=f.granuloma))
    lines += lung or [s["lungs_clear"]]
    effs = [side for side, on in (("right", f.effusion_right), ("left", f.effusion_left)) if on]
    if len(effs) == 2:
        lines.append(s["eff"].format(side="bilateral"))
    elif effs:
        lines.append(s["eff"].format(side=effs[0]))
    if f.pneumothorax:
        lines.append(s["ptx"].format(side=f.pneumothorax))
    if not effs and not f.pneumothorax:
        lines.append(s["eff_none"])
    if f.device != "none":
        lines.append(s["dev"].format(device=f.device))
    if style in (2, 4):  # these radiologists start with the lungs
        lines = lines[1:] + lines[:1]
    k = int(rng.integers(0, 3))
    lines += [str(e) for e in rng.choice(_EXTRAS, size=k, replace=False)]
    abnormal = f.cardiomegaly or effs or f.opacity or f.nodule or f.pneumothorax
    lines.append(s["imp"] if abnormal else s["imp_ok"])
    head = str(rng.choice(_COMPARE)) if study_index > 0 else str(rng.choice(_FIRST))
    text = " ".join(x for x in [head, *lines] if x)
    return re.sub(r"(^|\. )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _draw_findings(rng: np.random.Generator, chronic: Findings | None) -> Findings:
    loc = lambda: LOCATIONS[int(rng.integers(len(LOCATIONS)))]  # noqa: E731
    base = chronic or Findings()
    return Findings(
        cardiomegaly=base.cardiomegaly or bool(rng.random() < 0.08),
        effusion_right=bool(rng.random() < 0.12),
        effusion_left=bool(rng.random() < 0.12),
        opacity=loc() if rng.random() < 0.2 else None,
        nodule=base.nodule or (loc() if rng.random() < 0.08 else None),
        granuloma=base.granuloma,
        pneumothorax=("right" if rng.random() < 0.5 else "left") if rng.random() < 0.05 else None,
        device=base.device
        if base.device != "none"
        else DEVICES[int(rng.choice(4, p=[0.85, 0.05, 0.06, 0.04]))],
    )


def _chronic(rng: np.random.Generator) -> Findings:
    loc = lambda: LOCATIONS[int(rng.integers(len(LOCATIONS)))]  # noqa: E731
    return Findings(
        cardiomegaly=bool(rng.random() < 0.15),
        granuloma=loc() if rng.random() < 0.15 else None,
        nodule=loc() if rng.random() < 0.05 else None,
        device=DEVICES[int(rng.choice(4, p=[0.85, 0.06, 0.04, 0.05]))],
    )


# ------------------------------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class MedCorpus:
    """Studies with their (N x S x S uint8) images, reports, patient ids and findings."""

    name: str
    ids: tuple[str, ...]
    patients: tuple[str, ...]
    reports: tuple[str, ...]
    images: np.ndarray
    findings: tuple[dict, ...]
    r2gen_split: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def patient_index(self) -> tuple[list[str], np.ndarray]:
        """(patient names in first-seen order, patient number per study)."""
        names = list(dict.fromkeys(self.patients))
        pos = {p: i for i, p in enumerate(names)}
        return names, np.array([pos[p] for p in self.patients], dtype=np.int64)


def _save(out: Path, c: MedCorpus) -> None:
    np.save(out / "images.npy", c.images)
    meta = {k: list(getattr(c, k)) for k in ("ids", "patients", "reports", "findings", "r2gen_split")}
    (out / "meta.json").write_text(json.dumps({"name": c.name, **meta}))


def _load(art) -> MedCorpus:
    meta = json.loads(art.file("meta.json").read_text())
    return MedCorpus(
        meta["name"],
        tuple(meta["ids"]),
        tuple(meta["patients"]),
        tuple(meta["reports"]),
        np.load(art.file("images.npy")),
        tuple(meta["findings"]),
        tuple(meta["r2gen_split"]),
    )


def synthetic_world(cache_dir: str | Path, n_studies: int, size: int, seed: int) -> MedCorpus:
    """The embedded synthetic chest-radiograph world (cached, deterministic per seed).

    Patients have 1-3 studies (probabilities 0.6 / 0.3 / 0.1), a patient-level :class:`Anatomy` and chronic
    findings (cardiomegaly, granuloma, nodule, device) that persist across their studies; acute findings
    (effusions, opacities, pneumothorax) are drawn per study. Each study is reported by a random one of five
    radiologists (:func:`write_report`), one per reading site, and the image carries that site's burnt-in
    marker, so the image tells a model which phrasing to use. The R2Gen split is by patient: 70% train, 10%
    val, 20% test.
    """
    from m4i_utils.core.cache import cached

    def build(out: Path) -> None:
        rng = rng_for(seed, "synth_cxr", n_studies, size)
        ids, pats, reps, imgs, finds, split = [], [], [], [], [], []
        p = 0
        while len(ids) < n_studies:
            anat, chronic = Anatomy.draw(rng), _chronic(rng)
            psplit = str(rng.choice(STANDARD_SPLITS, p=[0.7, 0.1, 0.2]))
            for k in range(min(int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])), n_studies - len(ids))):
                f = _draw_findings(rng, chronic)
                ids.append(f"P{p:05d}_S{k}")
                pats.append(f"P{p:05d}")
                site = int(rng.integers(len(_STYLES)))
                reps.append(write_report(f, site, rng, k))
                imgs.append(render_image(f, anat, rng, size, site))
                finds.append(f.as_dict())
                split.append(psplit)
            p += 1
        _save(
            out,
            MedCorpus(
                "synth_cxr", tuple(ids), tuple(pats), tuple(reps), np.stack(imgs), tuple(finds), tuple(split)
            ),
        )

    params = {"n_studies": n_studies, "size": size, "seed": seed}
    return _load(cached(cache_dir, "synth_cxr", params, build))


def find_iu_annotation(data_root: str | Path | None) -> Path | None:
    """``<data_root>/iu_xray_reports_only/iu_xray/annotation.json`` if it exists, else None."""
    if not data_root:
        return None
    path = Path(data_root) / IU_SUBDIR
    return path if path.is_file() else None


def iu_rendered_corpus(cache_dir: str | Path, annotation: str | Path, size: int, seed: int) -> MedCorpus:
    """REAL IU X-Ray reports paired with images RENDERED from the findings each report states (cached).

    Each study gets its own random anatomy (the R2Gen file has no patient ids, so every study is its own
    patient). Reports are kept verbatim (including ``XXXX`` redactions); empty reports are dropped.
    """
    from m4i_utils.core.cache import cached

    annotation = Path(annotation)
    digest = hashlib.sha256(annotation.read_bytes()).hexdigest()[:16]

    def build(out: Path) -> None:
        # the loader's warnings (non-standard split key, missing val split) stay visible
        studies = [s for s in load_r2gen_annotation(annotation) if s.report.strip()]
        rng = rng_for(seed, "iu_rendered", size)
        finds = [parse_findings(s.report, seed) for s in studies]
        imgs = np.stack([render_image(f, Anatomy.draw(rng), rng, size) for f in finds])
        _save(
            out,
            MedCorpus(
                "iu_xray_rendered",
                tuple(s.id for s in studies),
                tuple(s.patient for s in studies),
                tuple(s.report for s in studies),
                imgs,
                tuple(f.as_dict() for f in finds),
                tuple(s.split for s in studies),
            ),
        )

    params = {"annotation_sha": digest, "size": size, "seed": seed}
    return _load(cached(cache_dir, "iu_rendered", params, build))


def load_med_corpus(cfg) -> MedCorpus:
    """The corpus of ``cfg.med_source``: ``synthetic`` (the embedded world, the default) or ``iu_xray`` (real
    IU X-Ray reports under the data root, rendered images). Nothing switches silently: the real reports are
    used only when asked for.

    Raises:
        DataError: ``iu_xray`` requested but not under the data root (says where it is expected).
        ValueError: any other ``med_source``.
    """
    source = cfg.med_source
    if source == "iu_xray":
        ann = find_iu_annotation(cfg.data_root)
        if ann is None:
            raise DataError(
                f"med_source='iu_xray' needs {IU_SUBDIR} under the data root ({cfg.data_root!r}); set "
                "M4I_DATA_ROOT to the folder holding iu_xray_reports_only (R2Gen IU X-Ray annotation.json)"
            )
        return iu_rendered_corpus(cfg.cache_dir, ann, cfg.med_image_size, cfg.seed)
    if source != "synthetic":
        raise ValueError(f"med_source={source!r} is not valid; use 'synthetic' (default) or 'iu_xray'")
    return synthetic_world(cfg.cache_dir, cfg.med_n_studies, cfg.med_image_size, cfg.seed)


def patient_splits(
    corpus: MedCorpus, sizes: dict[str, int], min_public: int, seed: int
) -> dict[str, np.ndarray]:
    """Disjoint roles by PATIENT (:func:`m4i_utils.data.splits.compute_splits` over patients), as study
    indices.

    All studies of a patient share one role, so a patient is a member or a non-member as a whole.
    """
    from m4i_utils.data.splits import compute_splits

    names, pidx = corpus.patient_index()
    roles = compute_splits(len(names), sizes, min_public, seed, corpus.name)
    by_patient = [[] for _ in names]
    for i, p in enumerate(pidx):
        by_patient[p].append(i)
    return {
        r: np.array(sorted(i for p in ps for i in by_patient[p]), dtype=np.int64) for r, ps in roles.items()
    }
