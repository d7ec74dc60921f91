"""Profiles: one frozen configuration object per run (smoke / default / paper).

Every notebook resolves ``PROFILE`` (from the ``M4I_PROFILE`` environment variable, overridable by papermill)
plus a dict of overrides into a :class:`Config` and prints it. Sizes follow the paper's appendix C.1 in the
``paper`` profile; the other profiles shrink sizes and epochs, never the method.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

SYNTHETIC_DATASETS = ("synth_coco", "synth_flickr", "synth_iapr")
REAL_DATASETS = ("mscoco", "flickr8k", "iapr_tc12")


@dataclass(frozen=True)
class Config:
    """All knobs of one run. Paths are environment; every other field is science and enters cache keys."""

    profile: str
    seed: int = 0
    # --- data (paper appendix C.1) ---
    datasets: tuple[str, ...] = SYNTHETIC_DATASETS
    n_pairs: int = 10_000  # pairs generated per synthetic world
    image_size: int = 64  # side of the synthetic images, px
    n_target_members: int = 1_000
    n_target_nonmembers: int = 1_000
    n_target_test: int = 500
    n_shadow_members: int = 1_000
    n_shadow_nonmembers: int = 1_000
    min_public: int = 5_000  # attacker's public split must hold at least this many pairs
    vocab_threshold: int = 4  # paper / authors' code: tokens with count >= 4
    max_caption_len: int = 20  # greedy decoding length (authors' code)
    # --- captioner (paper section 4.1, authors' code) ---
    families: tuple[str, ...] = ("resnet", "vgg")
    resnet_trunk: str = "resnet18"
    vgg_trunk: str = "vgg11_bn"
    trunk_weights: str = "public_pretrain"  # IMAGENET1K_V1 | public_pretrain | random (ablation only)
    trunk_input_size: int = 64
    pretrain_epochs: int = 4
    embed_size: int = 256
    hidden_size: int = 512
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    train_augment: bool = False
    # --- captioner additions (issue 3; paper values are the dataclass defaults) ---
    mobilenet_trunk: str = "mobilenet_v2"  # third family (ImageNet weights available offline)
    vgg_pool: int = 7  # VGG features are AdaptiveAvgPool2d(vgg_pool) -> 512*vgg_pool**2 (paper: 7 -> 25,088)
    pretrain_images: int = 0  # public_pretrain: max pooled public images (0 = all of them)
    pretrain_lr: float = 1e-3  # public_pretrain: Adam lr of the multi-label bag-of-words objective
    n_val: int = 200  # validation slice (loss curve only) = first n_val pairs of the public split
    augment_views: int = 4  # train_augment: augmented views (flip + random resized crop) cached per image
    beam_width: int = 1  # decoding: 1 = greedy (paper); >1 = beam search
    # --- metric-based attack (paper section 3.1) ---
    mb_features: tuple[str, ...] = ("bleu1", "bleu2", "bleu3", "rougeL")  # paper; authors' code: rouge1/2/L
    mb_smoothing: bool = False  # paper: unsmoothed sentence BLEU
    mb_svm_solver: str = "liblinear"  # libsvm = authors' SVC(kernel="linear", C=1e5); see metric_attack
    mb_svm_scale: bool = True  # authors: unscaled
    mb_svm_c: float = 1e5
    n_bootstrap: int = 200  # bootstrap resamples for confidence intervals
    # --- feature-based attack: multimodal feature extractor (paper 3.2, appendix C.3; models.mfe) ---
    mfe_family: str = "resnet"  # frozen trunk feeding the MFE image branch (paper: ResNet-152)
    mfe_feature_size: int = 256  # preset shared feature size (authors' code)
    mfe_hidden: int = 512  # hidden width of both branch MLPs (authors' text MLP: V -> 512 -> 256)
    mfe_epochs: int = 20  # authors: 20 (alternating); here joint epochs
    mfe_batch_size: int = 128  # authors: 128
    mfe_lr: float = 1e-3  # Adam (authors)
    mfe_holdout: float = 0.1  # fraction of public images held out (validation: distance, recall@k)
    mfe_cov_weight: float = 0.04  # collapse guard: decorrelation weight (VICReg ratio 1:25; 0 = eq. 2 + BN)
    # --- feature-based attack model (paper appendix C.3; m4i_utils.attacks.feature_attack) ---
    fb_signed: bool = True  # z = F_img - F_txt (paper); False = |F_img - F_txt| (authors' code)
    fb_lr: float = 1e-3  # Adam
    fb_batch_size: int = 64
    fb_max_epochs: int = 200
    fb_patience: int = 10  # early stopping on validation loss
    fb_val_fraction: float = 0.2  # stratified validation slice of the shadow features
    # --- medical report generation (paper appendix G; data.medical / models.r2gen, notebook 07) ---
    med_source: str = "synthetic"  # synthetic (embedded world) | iu_xray (real IU X-Ray reports, data root)
    med_n_studies: int = 3_000  # studies in the synthetic chest-radiograph world
    med_image_size: int = 64  # rendered radiograph side, px (grey-scale)
    med_n_target_members: int = 200  # split sizes in PATIENTS (all studies of a patient share a role)
    med_n_target_nonmembers: int = 200
    med_n_target_test: int = 100
    med_n_shadow_members: int = 200
    med_n_shadow_nonmembers: int = 200
    med_min_public: int = 200
    med_vocab_threshold: int = 3  # R2Gen: IU 3, MIMIC 10
    med_max_len: int = 60  # R2Gen: IU 60, MIMIC 100
    med_d_model: int = 128  # R2GenCMN: 512
    med_layers: int = 2  # R2GenCMN: 3 encoder + 3 decoder layers
    med_heads: int = 4  # R2GenCMN: 8
    med_d_ff: int = 256  # R2GenCMN: 512
    med_memory_size: int = 128  # cross-modal memory slots (R2GenCMN: 2048)
    med_topk: int = 8  # R2GenCMN: 32
    med_dropout: float = 0.1
    med_epochs: int = 20
    med_batch_size: int = 32
    med_lr: float = 1e-3  # Adam
    med_weight_decay: float = 5e-5  # R2GenCMN
    med_beam_width: int = 3  # R2GenCMN: 3
    med_lstm_epochs: int = 30  # data-only shadow (captioning CNN+LSTM architecture)
    # --- defenses (paper section 5; m4i_utils.experiments.defenses, notebook 09) ---
    def_dp_epsilons: tuple[float, ...] = (1.0, 8.0)  # DP-SGD target epsilons (privacy unit: image)
    def_dp_delta: float = 1e-5  # DP delta (< 1 / number of member images in every profile)
    def_dp_max_grad_norm: float = 1.0  # per-sample clipping norm
    def_dp_batch_size: int = 64  # expected Poisson batch, in images
    def_dp_norm_groups: int = 32  # GroupNorm groups replacing the trainable BatchNorm1d
    def_dp_passes: int = 0  # DP passes over the images (0 = epochs x captions per image, the twin's budget)
    def_weight_decays: tuple[float, ...] = (1e-4, 1e-3)  # L2 sweep
    def_augment: bool = True  # include the data-augmentation defense (train_augment=True)
    # --- text-to-speech (M4I appendix E; m4i_utils.models.tts, notebook 08) ---
    tts_source: str = "synthetic"  # synthetic (embedded speech world) | real (shared LJSpeech-format clips)
    # real mode: (members' corpus, other-speaker corpus) under the data root; the paper's would be
    # ("ljspeech", "libritts") with the full corpora
    tts_real_corpora: tuple[str, ...] = ("speaker2", "ljspeech")
    tts_n_members: int = 200  # target members (paper: 3,000 LJSpeech utterances); shadow members alike
    tts_n_nonmembers: int = 200  # per role and setting (iid: held-out same speaker; shift: other corpus)
    tts_n_test: int = 100  # held-out utterances for utility (mel L1 / L2)
    tts_n_public: int = 600  # attacker's public pairs for the FB encoders
    tts_d_model: int = 128  # FastSpeech2: 256
    tts_enc_layers: int = 2  # FastSpeech2: 4 FFT blocks
    tts_dec_layers: int = 2  # FastSpeech2: 6 FFT blocks
    tts_heads: int = 2  # FastSpeech2: 2
    tts_d_ff: int = 256  # FastSpeech2: 1024
    tts_kernel: int = 9  # FFT block convolution kernel (FastSpeech2: 9)
    tts_dropout: float = 0.1  # FFT blocks (FastSpeech2: 0.2; variance predictors keep 0.5)
    tts_variance: bool = True  # pitch and energy predictors (FastSpeech2's variance adaptor)
    tts_epochs: int = 60
    tts_batch_size: int = 16
    tts_lr: float = 1e-3  # Adam with warm-up (FastSpeech2: Noam schedule, 4,000 warm-up steps)
    tts_fb_dim: int = 64  # output of the FB text / mel MLP encoders
    tts_fb_epochs: int = 60
    # --- paths (not science: never part of cache keys) ---
    data_root: str | None = field(default=None, compare=False)
    cache_dir: str = field(default=str(REPO_ROOT / "data" / "cache"), compare=False)
    output_dir: str = field(default=str(REPO_ROOT / "figures"), compare=False)

    def science(self) -> dict[str, Any]:
        """Fields that affect results (everything except paths), as a JSON-able dict."""
        skip = {"data_root", "cache_dir", "output_dir"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    @property
    def figures_dir(self) -> Path:
        """Where this profile's figures and result tables go: ``figures/<profile>/``."""
        path = Path(self.output_dir) / self.profile
        path.mkdir(parents=True, exist_ok=True)
        return path

    def __str__(self) -> str:
        rows = [f"  {k:<22} {v!r}" for k, v in dataclasses.asdict(self).items()]
        return "Config(\n" + "\n".join(rows) + "\n)"


PROFILES: dict[str, dict[str, Any]] = {
    # CI: every notebook well under 2 minutes on 2 CPU cores.
    "smoke": dict(
        families=("mobilenet", "resnet"),  # as the default profile
        mfe_family="mobilenet",
        n_pairs=1_200,
        image_size=32,
        n_target_members=120,
        n_target_nonmembers=120,
        n_target_test=60,
        n_shadow_members=120,
        n_shadow_nonmembers=120,
        min_public=300,
        trunk_input_size=32,
        pretrain_epochs=1,
        epochs=2,
        batch_size=32,
        vgg_pool=1,
        pretrain_images=600,
        n_val=50,
        mfe_epochs=5,
        med_n_studies=600,
        med_image_size=32,
        med_n_target_members=60,
        med_n_target_nonmembers=60,
        med_n_target_test=30,
        med_n_shadow_members=60,
        med_n_shadow_nonmembers=60,
        med_min_public=50,
        med_d_model=64,
        med_layers=1,
        med_memory_size=64,
        med_topk=4,
        med_epochs=3,
        med_beam_width=1,
        med_lstm_epochs=3,
        def_dp_epsilons=(8.0,),
        def_weight_decays=(1e-3,),
        def_dp_batch_size=32,
        def_dp_passes=2,  # smoke only: DPLSTM per-sample gradients are slow on CPU
        tts_n_members=40,
        tts_n_nonmembers=40,
        tts_n_test=20,
        tts_n_public=60,
        tts_d_model=64,
        tts_enc_layers=1,
        tts_dec_layers=1,
        tts_d_ff=128,
        tts_epochs=4,
        tts_fb_epochs=5,
    ),
    # The embedded default: meaningful results on a laptop CPU in minutes.
    "default": dict(
        mfe_epochs=10,  # ~25k public pairs per dataset: one MFE in about a minute on 2 CPU cores
        # 500 members per model (paper 3,000): 12 captioners must train in minutes on 2 CPU cores.
        n_target_members=500,
        n_target_nonmembers=500,
        n_shadow_members=500,
        n_shadow_nonmembers=500,
        # Families: MobileNetV2 with its real ImageNet weights (available offline) and ResNet-18
        # pretrained here on all public pairs (ResNet/VGG ImageNet weights are not available offline; a
        # VGG trunk pretrained on 2,000 public images for 3 epochs gave captioners no better than a
        # constant caption and a ROUGE-L member gap of -0.007 to +0.013). Paper profile: ResNet-152 / VGG-16.
        families=("mobilenet", "resnet"),
        mfe_family="mobilenet",
        vgg_pool=2,
        pretrain_images=0,
        pretrain_epochs=3,
        # Captioners: Adam (paper: SGD lr 0.01) to train within a CPU epoch budget; hidden 256 (paper 512)
        # keeps all 12 captioners within the default profile's time budget on 2 cores.
        optimizer="adam",
        lr=2e-3,
        hidden_size=256,
        epochs=20,
        def_dp_passes=10,  # DPLSTM per-sample gradients: the full twin budget (100 passes) is ~1 h on CPU
    ),
    # The paper's sizes (appendix C.1, authors' code): for a GPU and the real datasets.
    "paper": dict(
        n_pairs=25_000,
        image_size=128,
        n_target_members=3_000,
        n_target_nonmembers=3_000,
        n_target_test=1_000,
        n_shadow_members=3_000,
        n_shadow_nonmembers=3_000,
        min_public=5_000,
        resnet_trunk="resnet152",
        vgg_trunk="vgg16",
        trunk_weights="IMAGENET1K_V1",
        trunk_input_size=224,
        epochs=20,
        batch_size=128,
        med_n_studies=12_000,
        med_image_size=224,
        med_n_target_members=1_500,
        med_n_target_nonmembers=1_500,
        med_n_target_test=500,
        med_n_shadow_members=1_500,
        med_n_shadow_nonmembers=1_500,
        med_min_public=1_000,
        med_d_model=512,
        med_layers=3,
        med_heads=8,
        med_d_ff=512,
        med_memory_size=2048,
        med_topk=32,
        med_epochs=100,
        med_batch_size=16,
        med_lr=1e-4,
        def_dp_epsilons=(1.0, 4.0, 8.0),
        def_dp_batch_size=256,
        tts_n_members=3_000,
        tts_n_nonmembers=3_000,
        tts_n_test=500,
        tts_n_public=3_000,
        tts_d_model=256,
        tts_enc_layers=4,
        tts_dec_layers=6,
        tts_d_ff=1024,
        tts_epochs=100,
        tts_batch_size=32,
        tts_dropout=0.2,
    ),
}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Coerce an override (possibly a string from the command line) to the type of the field's default."""
    if isinstance(default, tuple) and isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, bool) and isinstance(value, str):
        if value.lower() not in {"true", "false", "1", "0"}:
            raise ValueError(f"override {name}={value!r}: expected true or false")
        return value.lower() in {"true", "1"}
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, str):
        return int(value)
    if isinstance(default, float) and isinstance(value, str | int):
        return float(value)
    return value


def resolve_profile(profile: str, overrides: dict[str, Any] | None = None) -> Config:
    """Turn a profile name plus overrides into a frozen :class:`Config`.

    Args:
        profile: one of ``smoke``, ``default``, ``paper``.
        overrides: field -> value; strings are coerced to the field's type (``"a,b"`` -> tuple).
            ``M4I_DATA_ROOT`` and ``M4I_CACHE`` environment variables fill ``data_root`` / ``cache_dir``
            unless overridden.
    Returns:
        The resolved, immutable configuration.
    Raises:
        ValueError: unknown profile or unknown field, with the valid names.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    values: dict[str, Any] = dict(PROFILES[profile])
    if os.environ.get("M4I_DATA_ROOT"):
        values["data_root"] = os.environ["M4I_DATA_ROOT"]
    if os.environ.get("M4I_CACHE"):
        values["cache_dir"] = os.environ["M4I_CACHE"]
    for name, value in (overrides or {}).items():
        if name not in fields or name == "profile":
            raise ValueError(
                f"unknown config field {name!r}; valid fields: {sorted(set(fields) - {'profile'})}"
            )
        default = values.get(name, fields[name].default)
        values[name] = _coerce(name, value, default)
    cfg = Config(profile=profile, **values)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    known = set(SYNTHETIC_DATASETS) | set(REAL_DATASETS)
    unknown = [d for d in cfg.datasets if d not in known]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; choose from {sorted(known)}")
    if cfg.trunk_weights not in {"IMAGENET1K_V1", "public_pretrain", "random"}:
        raise ValueError(
            f"unknown trunk_weights {cfg.trunk_weights!r}; use IMAGENET1K_V1, public_pretrain or random"
        )
    if cfg.tts_source not in {"synthetic", "real"}:
        raise ValueError(f"unknown tts_source {cfg.tts_source!r}; use synthetic or real")
    if len(cfg.tts_real_corpora) != 2:
        raise ValueError(
            f"tts_real_corpora needs two corpus names (members', other speakers'), got {cfg.tts_real_corpora}"
        )
    for name in ("n_target_members", "n_target_nonmembers", "n_target_test", "n_shadow_members"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")


def scaled_to(cfg: Config, n_records: int) -> Config:
    """``cfg`` with split sizes scaled to a small real corpus of ``n_records`` pairs.

    Used for the real Flickr8k subset (1,000 images): 30% target members, 30% target non-members, 10% target
    test, 10% shadow members, 10% shadow non-members, 10% public. Everything else is unchanged.
    """
    tenth = n_records // 10
    return dataclasses.replace(
        cfg,
        n_target_members=3 * tenth,
        n_target_nonmembers=3 * tenth,
        n_target_test=tenth,
        n_shadow_members=tenth,
        n_shadow_nonmembers=tenth,
        min_public=min(cfg.min_public, n_records - 9 * tenth),
    )
