"""Profiles: one frozen configuration object per run (smoke / default / paper).

Every notebook resolves ``PROFILE`` (from the ``M4I_PROFILE`` environment variable, overridable by papermill)
plus a dict of overrides into a :class:`Config` and prints it. Sizes follow the paper's appendix C.1 in the
``paper`` profile; the other profiles shrink sizes and epochs, never the method.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# Config fields that never change results: paths and the run store's bookkeeping (not in science / run ids).
NOT_SCIENCE = frozenset(
    {
        "data_root",
        "cache_dir",
        "output_dir",
        "runs_dir",
        "run_dir",
        "overrides",
        "executor",
        "workers",
        "dask_address",
        "threads",
    }
)

SYNTHETIC_DATASETS = ("synth_coco", "synth_flickr", "synth_iapr")
REAL_DATASETS = ("mscoco", "flickr8k", "iapr_tc12")


@dataclass(frozen=True)
class Config:
    """All knobs of one run. Paths are environment; every other field is science and enters cache keys."""

    profile: str
    seed: int = 0  # the split seed: splits, synthetic worlds, trunk pretraining (and training seed 0)
    # training seeds of the grid's captioners (splits and trunks fixed): spread over training, not queries
    train_seeds: tuple[int, ...] = (0,)
    # how independent jobs (e.g. the grid's captioners) run: "inprocess" (one after another), "local" (a Dask
    # LocalCluster of `workers` processes on this machine), "dask" (the Dask scheduler at `dask_address`)
    executor: str = "inprocess"
    workers: int = 2
    dask_address: str = ""
    # torch CPU threads of every process the runner starts (0: every core the process may use). PyTorch's CPU
    # reductions depend on the thread count, so a pinned count makes a run's numbers the same on any machine.
    threads: int = 0
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
    # a dataset with fewer pairs than the split sizes need is an error unless this opt-in is set: then its
    # splits are scaled to the data (scaled_to: 30/30/10/10/10/10 %) and the scaled sizes printed
    scale_splits_to_data: bool = False
    coco_split: str = "train2017"  # MSCOCO split read by the loader: train2017, val2017, train2014, val2014
    vocab_threshold: int = 4  # paper / authors' code: tokens with count >= 4
    max_caption_len: int = 20  # greedy decoding length (authors' code)
    # --- captioner (paper section 4.1, authors' code) ---
    families: tuple[str, ...] = ("resnet", "vgg")
    resnet_trunk: str = "resnet18"
    vgg_trunk: str = "vgg11_bn"
    trunk_weights: str = (
        "public_pretrain"  # ResNet / VGG: IMAGENET1K_V1 | public_pretrain | random (ablation)
    )
    mobilenet_weights: str = "IMAGENET1K_V1"  # MobileNetV2: IMAGENET1K_V1 (available offline) | random
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
    # --- defenses (paper section 5; m4i_utils.experiments.defenses, models.dp_captioner, notebook 09) ---
    def_dp_epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)  # DP-SGD target epsilons (privacy unit: image)
    def_dp_delta: float = 1e-5  # DP delta (< 1 / number of member images in every profile)
    def_dp_max_grad_norm: float = 1.0  # per-sample clipping norm
    def_dp_batch_size: int = 64  # expected Poisson batch, in images
    def_dp_norm_groups: int = 1  # GroupNorm groups replacing the trainable BatchNorm1d (1 group: tune_dp.py)
    def_dp_passes: int = 0  # DP passes over the images (0 = epochs x captions per image, the twin's budget)
    # the DP study of notebook 09 (its own seeded i.i.d. split of the world: experiments.dp_study)
    def_dp_members: int = 2_000  # member images of every DP model (and of its non-private control)
    def_dp_nonmembers: int = 1_000  # the attacks' non-member images
    def_dp_test: int = 500  # held-out images for utility
    def_dp_canaries: int = 500  # audit canaries, each in the training set by a fair coin (0: no audit)
    def_dp_embed_size: int = 64  # the DP captioner's widths (DPLSTM per-sample gradients cost ~ width^2)
    def_dp_hidden_size: int = 128
    def_dp_optimizer: str = "adam"
    def_dp_lr: float = 2e-3  # chosen on public data only (scripts/tune_dp.py)
    # non-private passes over the public tuning images before DP fine-tuning (0: DP from scratch)
    def_dp_public_passes: int = 120  # tune_dp.py on public data: 20 -> 60 -> 120 passes raised DP utility
    def_weight_decays: tuple[float, ...] = (1e-4, 1e-3)  # L2 sweep
    def_augment: bool = True  # include the data-augmentation defense (train_augment=True)
    # the calibrated attacker of each defense: target + def_calib_models - 1 references, defended recipe
    def_calib_models: int = 5
    # --- text-to-speech (M4I appendix E; m4i_utils.data.speech_sets, models.tts, notebook 08) ---
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
    # --- calibrated reference-model attacks (LiRA, RMIA; experiments.calibrated, notebook 10) ---
    # models trained on random halves of the population (the first dataset's target and shadow roles): the
    # target (model 0) and calib_models - 1 reference models, all of the first family
    calib_models: int = 9
    calib_ablation: tuple[int, ...] = (2, 4, 8)  # numbers of reference models in the ablation
    calib_population_z: int = 2000  # RMIA's population records z, never trained on: target_test, then public
    calib_rmia_a: float = 0.3  # RMIA offline: p(x) = ((1 + a) mean_OUT p(x) + 1 - a) / 2 (Zarifzadeh 2024)
    calib_min_std: float = 0.05  # floor of LiRA's per-record standard deviations (logit / log-prob units)
    calib_views: int = 4  # augmented views per query for the richer black-box signal (0: off)
    # report generators of the medical calibrated attack (target + references), on halves of the patients
    # of the medical target roles (0: no medical part)
    calib_med_models: int = 5
    # TTS models of the speech calibrated attack (target + references), on halves of the TTS target roles'
    # utterances (0: no speech part)
    calib_tts_models: int = 3
    # the views' colour jitter: brightness, contrast and saturation each scaled by a factor drawn uniformly
    # from [1 - j, 1 + j] (0: flip + crop only)
    calib_view_jitter: float = 0.4
    # --- CLIP-like models: identity inference and pair-level MI (experiments.clip_study, notebook 11) ---
    clip_source: str = "synthetic"  # synthetic (procedural faces world) | lfw (LFW frontalized, data root)
    # N: training images per member identity (the paper's injection counts); one model holds every group
    clip_inject_counts: tuple[int, ...] = (1, 5, 10, 25, 50, 75)
    clip_members_per_count: int = 20  # member identities per injection count
    clip_nonmembers: int = 120  # evaluated identities never in training
    clip_name_only: int = (
        20  # control identities whose names (never faces) appear in filler captions (0: none)
    )
    clip_name_only_count: int = 25  # filler captions that mention each control name
    clip_candidates: int = 1_000  # candidate names of the zero-shot query (evaluated people + random names)
    clip_attack_images: int = 30  # held-out images per evaluated person (the largest k)
    clip_k: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 30)  # attack images per person (IDIA's k)
    clip_draws: int = 20  # random draws of k images per person and k (the paper's 20)
    clip_tau: int = 1  # IDIA: member iff at least tau of the 21 templates name the person (paper's code: 1)
    clip_filler_world: str = "synth_coco"  # captioned non-person pairs of the training set
    clip_filler: int = 4_000  # filler pairs in training (the main model)
    clip_cross_world: str = "synth_iapr"  # cross-corpus non-members of the pair-level attacks
    clip_pair_queries: int = 500  # members and as many non-members per pair-level setting
    clip_known_nonmembers: int = 500  # WSA's known non-members (held-out filler pairs, never queried)
    clip_aug_views: int = 8  # AEA: augmented views per query image
    clip_size_sweep: tuple[int, ...] = (1_000, 2_000)  # filler pairs of the extra models of the size sweep
    # the calibrated attack on CSA: clip_calib_models models (a target + references), each trained on
    # clip_calib_base filler pairs plus a random half of the 2 x clip_pair_queries i.i.d. query pairs (0: off)
    clip_calib_models: int = 5
    clip_calib_base: int = 500
    clip_image_size: int = 64
    clip_patch_size: int = 16  # 16 tokens of a 64 px image (8: 64 tokens, about 2x the time)
    clip_width: int = 128  # both towers
    clip_layers: int = 3  # both towers
    clip_heads: int = 4
    clip_embed_dim: int = 128
    clip_context: int = 24  # text tokens (open_clip BPE, truncated)
    clip_epochs: int = 15
    clip_batch_size: int = 128
    clip_lr: float = 1e-3  # AdamW, cosine decay after a linear warm-up
    clip_weight_decay: float = 0.1
    # --- masked image modeling: MI against a masked autoencoder (experiments.mim_study, notebook 12) ---
    mim_source: str = (
        "synthetic"  # synthetic (the mim_world image world) | flickr8k | lfw (images, data root)
    )
    mim_world: str = "synth_coco"  # the embedded world of the synthetic mode
    # the query population: the target pre-trains on a seeded random half (members), the rest are its
    # non-members; every reference model of the calibrated attack trains on another random half
    mim_population: int = 500
    mim_shadow: int = 500  # the attacker's own images (disjoint): the shadow pre-trains on a random half
    mim_probe: int = 1_000  # held-out labelled images of the linear probe (half fit, half scored)
    mim_image_size: int = 64
    mim_patch_size: int = 8  # 64 patches of a 64 px image
    mim_width: int = 128  # encoder
    mim_layers: int = 4
    mim_decoder_width: int = 64  # MAE's light decoder
    mim_decoder_layers: int = 2
    mim_norm_pix: bool = True  # MAE's norm_pix_loss: per-patch normalised pixel targets
    mim_mask_ratio: float = 0.75  # pre-training mask ratio (MAE's)
    mim_epochs: int = 300  # 250 members: the error gap needs many passes (data/README.md)
    mim_batch_size: int = 64
    mim_lr: float = 1e-3  # AdamW, cosine decay after a linear warm-up
    mim_weight_decay: float = 0.05
    mim_attack_ratio: float = 0.75  # the attacker's mask ratio
    mim_attack_masks: int = 8  # M: random masks averaged per query
    mim_ratio_sweep: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)  # ablation: the attacker's mask ratio
    mim_masks_sweep: tuple[int, ...] = (1, 2, 4, 8, 16)  # ablation: M
    mim_epoch_sweep: tuple[int, ...] = (100, 200)  # ablation: extra targets pre-trained for these epochs
    mim_size_sweep: tuple[str, ...] = ("64x2",)  # ablation: extra targets, encoder WIDTHxLAYERS
    mim_aug_views: int = 8  # encoder-only baseline: augmented views per query
    mim_calib_models: int = 3  # the target + reference models of the calibrated attack (0: off)
    # --- paths (not science: never part of cache keys) ---
    data_root: str | None = field(default=None, compare=False)
    cache_dir: str = field(default=str(REPO_ROOT / "data" / "cache"), compare=False)
    output_dir: str = field(default=str(REPO_ROOT / "figures"), compare=False)
    runs_dir: str = field(default=str(REPO_ROOT / "runs"), compare=False)
    # explicit output folder of this run (the runner sets it for grid cells); None = chosen by the run store
    run_dir: str | None = field(default=None, compare=False)
    # science fields whose value differs from the profile's, as sorted (name, value) pairs (set by
    # resolve_profile; recorded with every result of the run)
    overrides: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    def science(self) -> dict[str, Any]:
        """Fields that affect results (everything except paths and bookkeeping), as a JSON-able dict."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_SCIENCE}

    @functools.cached_property
    def run_id(self) -> str:
        """``<profile>-<10 hex digits>``: a hash of the resolved science fields (seed included), so equal
        configurations share a run id and any other value of any field gives another."""
        blob = json.dumps(self.science(), sort_keys=True, default=str)
        return f"{self.profile}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"

    @functools.cached_property
    def figures_dir(self) -> Path:
        """This run's output folder (figures, tables, ``results.csv``, ``scores.parquet``, ``config.json``).

        A plain profile run (no science field differs from the profile) writes to ``figures/<profile>/``; a
        run with overrides writes to ``runs/<profile>/<run_id>/`` and never touches another run's folder;
        ``run_dir`` names the folder explicitly. The resolved config is written beside the outputs, once per
        config object (the property is cached).
        """
        if self.run_dir:
            path = Path(self.run_dir)
        elif self.overrides:
            path = Path(self.runs_dir) / self.profile / self.run_id
        else:
            path = Path(self.output_dir) / self.profile
        path.mkdir(parents=True, exist_ok=True)
        record = {"run_id": self.run_id, "profile": self.profile, "seed": self.seed}
        record |= {"overrides": dict(self.overrides), "science": self.science()}
        (path / "config.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
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
        calib_models=4,
        def_calib_models=3,
        calib_ablation=(1, 3),
        calib_population_z=100,
        calib_views=2,
        calib_med_models=3,
        calib_tts_models=3,
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
        def_dp_public_passes=2,
        def_dp_members=100,
        def_dp_nonmembers=60,
        def_dp_test=60,
        def_dp_canaries=40,
        def_dp_embed_size=32,
        def_dp_hidden_size=32,
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
        clip_inject_counts=(1, 10),
        clip_members_per_count=5,
        clip_nonmembers=10,
        clip_name_only=5,
        clip_name_only_count=5,
        clip_candidates=100,
        clip_attack_images=5,
        clip_k=(1, 3, 5),
        clip_draws=5,
        clip_filler=400,
        clip_pair_queries=100,
        clip_known_nonmembers=100,
        clip_aug_views=2,
        clip_size_sweep=(200,),
        clip_calib_models=3,
        clip_calib_base=100,
        clip_image_size=32,
        clip_patch_size=8,
        clip_width=64,
        clip_layers=2,
        clip_heads=2,
        clip_embed_dim=64,
        clip_epochs=3,
        clip_batch_size=64,
        mim_population=60,
        mim_shadow=60,
        mim_probe=100,
        mim_image_size=32,
        mim_width=64,
        mim_layers=2,
        mim_decoder_width=32,
        mim_decoder_layers=1,
        mim_epochs=3,
        mim_batch_size=32,
        mim_attack_masks=2,
        mim_ratio_sweep=(0.5, 0.75),
        mim_masks_sweep=(1, 2),
        mim_epoch_sweep=(2,),
        mim_size_sweep=("32x1",),
        mim_aug_views=2,
        mim_calib_models=3,
    ),
    # The embedded default: meaningful results on a laptop CPU in minutes.
    "default": dict(
        # three training seeds of the grid's captioners (splits and trunks fixed): the headline tables show
        # the spread over training beside the bootstrap CIs over queries; the 36 captioners train as jobs on
        # a local Dask cluster of 2 single-threaded workers (same results as in-process on one thread)
        train_seeds=(0, 1, 2),
        executor="local",
        workers=2,
        # one thread per process, as the executor workers: `make run` reproduces figures/default/ bit for bit
        threads=1,
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
        # DP study: Opacus's per-sample gradients cost ~1.6 ms per image and step at widths 64/128 on one core
        # (65 ms at 256/512; benchmarks/bench_dp.py), so 20 passes over 2,000 members take ~130 s per model
        # with two side by side; epsilons 1, 4 and 8 (the class default; each DP model needs a shadow), to
        # keep the DP part within 15 minutes; batch, learning rate and the public start from
        # scripts/tune_dp.py on public images (the README quotes its output).
        def_dp_batch_size=64,
        def_dp_passes=20,
    ),
    # The paper's sizes (appendix C.1, authors' code): for a GPU and the real datasets.
    "paper": dict(
        datasets=REAL_DATASETS,  # MSCOCO, Flickr8k, IAPR TC-12 under the data root (checked before any work)
        calib_models=17,  # the target + 16 reference models (LiRA's ablations go to 256 on CIFAR-10)
        def_calib_models=9,
        def_weight_decays=(1e-4, 1e-3, 1e-2),
        calib_ablation=(2, 4, 8, 16),
        calib_med_models=17,
        calib_tts_models=9,
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
        def_dp_epsilons=(0.5, 1.0, 2.0, 4.0, 8.0),
        def_dp_batch_size=256,
        def_dp_members=5_000,
        def_dp_embed_size=256,  # the paper's widths (for a GPU)
        def_dp_hidden_size=512,
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
        clip_members_per_count=50,  # the paper: 100 members per model
        clip_nonmembers=300,
        clip_filler=8_000,
        clip_size_sweep=(1_000, 2_000, 4_000),
        clip_calib_models=9,
        clip_calib_base=2_000,
        clip_width=256,
        clip_layers=6,
        clip_heads=8,
        clip_embed_dim=256,
        clip_epochs=50,  # the paper's
        clip_batch_size=256,
        # masked image modeling: a ViT-S-like encoder (MAE's decoder of 4 blocks at width 256), more images
        # and epochs (the paper pre-trains ViT-B/L for hundreds of epochs); not yet run on a GPU
        mim_population=5_000,
        mim_shadow=5_000,
        mim_probe=2_000,
        mim_width=384,
        mim_layers=12,
        mim_decoder_width=256,
        mim_decoder_layers=4,
        mim_epochs=400,
        mim_batch_size=256,
        mim_lr=5e-4,
        mim_epoch_sweep=(100, 200),
        mim_size_sweep=("192x6", "768x12"),
        mim_calib_models=9,
    ),
}


# The classroom profile (course assignments, docs/teaching.md): the default profile with the sizes that the
# assignments use cut so that each assignment runs in at most 5 minutes on a 2-core laptop from a cold cache,
# with effects that still show (measured figures in docs/teaching.md).
PROFILES["classroom"] = PROFILES["default"] | dict(
    mim_population=400,
    mim_shadow=200,
    mim_probe=200,
    mim_image_size=32,
    mim_width=64,
    mim_layers=2,
    mim_decoder_width=64,
    mim_decoder_layers=1,
    mim_epochs=300,
    mim_attack_masks=4,
    mim_ratio_sweep=(0.75,),
    mim_masks_sweep=(4,),
    mim_epoch_sweep=(),
    mim_size_sweep=(),
    mim_aug_views=2,
    mim_calib_models=9,
    # CLIP (assignment 5): one main model on fewer people and filler pairs, no size sweep, no population
    clip_inject_counts=(1, 10, 40),
    clip_members_per_count=10,
    clip_nonmembers=30,
    clip_name_only=0,
    clip_candidates=300,
    clip_attack_images=10,
    clip_k=(1, 3, 10),
    clip_filler=800,
    clip_epochs=40,
    clip_pair_queries=200,
    clip_known_nonmembers=200,
    clip_size_sweep=(),
    clip_calib_models=0,
    # DP-SGD (assignment 4): the study's DP captioner on 300 members and 200 audit canaries, epsilons 1, 4 and
    # 16; each model fine-tunes from the public start in about 20 s on 2 cores
    def_dp_epsilons=(1.0, 4.0, 16.0),
    def_dp_members=300,
    def_dp_nonmembers=300,
    def_dp_test=100,
    def_dp_canaries=200,
)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Coerce an override (possibly a string from the command line) to the type of the field's default.

    Raises:
        ValueError: the value cannot be read as that type (the message names the field and the value).
    """
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple):
            item = default[0] if default else None
            if isinstance(item, float | int) and not isinstance(item, bool):
                return tuple(_coerce(name, v, item) for v in value)
            return tuple(value)
        return value
    if isinstance(default, bool) and isinstance(value, str):
        if value.strip().lower() not in {"true", "false", "1", "0"}:
            raise ValueError(f"override {name}={value!r}: expected a boolean (true or false)")
        return value.strip().lower() in {"true", "1"}
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not number.is_integer():
            raise ValueError(f"override {name}={value!r}: expected an integer")
        return int(number)
    if isinstance(default, float) and isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"override {name}={value!r}: expected a number") from None
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
        ValueError: unknown profile or field (with close matches), a value that is not of the field's type,
            or any field out of its range or choices (:func:`validate_config`; the message names the field,
            the bad value and the valid range or choices).
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
            raise ValueError(_unknown_field_message(name, sorted(set(fields) - {"profile"})))
        default = values.get(name, fields[name].default)
        values[name] = _coerce(name, value, default)
    plain = Config(profile=profile, **dict(PROFILES[profile]))
    changed = {k: values[k] for k in values if k not in NOT_SCIENCE and values[k] != getattr(plain, k)}
    values["overrides"] = tuple(sorted(changed.items()))
    cfg = Config(profile=profile, **values)
    _validate(cfg)
    return cfg


# ------------------------------------------------------------------------------------------- validation

# torchvision trunk names per captioner family: the one list of valid names (models.trunks uses it). The
# Trunk wrapper needs ResNet's ``fc``, VGG's ``features`` and MobileNetV2's ``features`` + ``classifier``.
TRUNK_NAMES: dict[str, tuple[str, ...]] = {
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    "vgg": ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"),
    "mobilenet": ("mobilenet_v2",),
}
# family -> the config field naming its trunk
TRUNK_FIELDS: dict[str, str] = {"resnet": "resnet_trunk", "vgg": "vgg_trunk", "mobilenet": "mobilenet_trunk"}
TRUNK_WEIGHTS: tuple[str, ...] = ("IMAGENET1K_V1", "public_pretrain", "random")
MED_SOURCES: tuple[str, ...] = ("synthetic", "iu_xray")

# choice fields -> their valid values
CHOICES: dict[str, tuple[str, ...]] = {
    "trunk_weights": TRUNK_WEIGHTS,
    "mobilenet_weights": ("IMAGENET1K_V1", "random"),  # public pretraining exists for ResNet / VGG only
    "optimizer": ("sgd", "adam"),
    "def_dp_optimizer": ("sgd", "adam"),
    "mb_svm_solver": ("liblinear", "libsvm"),
    "mfe_family": tuple(TRUNK_NAMES),
    "med_source": MED_SOURCES,
    "tts_source": ("synthetic", "real"),
    "clip_source": ("synthetic", "lfw"),
    "clip_filler_world": SYNTHETIC_DATASETS,
    "clip_cross_world": SYNTHETIC_DATASETS,
    "mim_source": ("synthetic", "flickr8k", "lfw"),
    "mim_world": SYNTHETIC_DATASETS,
    "coco_split": ("train2017", "val2017", "train2014", "val2014"),
    "executor": ("inprocess", "local", "dask"),
    **{fld: TRUNK_NAMES[family] for family, fld in TRUNK_FIELDS.items()},
}
# integer fields that count something (sizes, epochs, widths, layers): >= 1
_POSITIVE_INTS: tuple[str, ...] = (
    "workers",
    *("n_pairs", "image_size", "n_target_members", "n_target_nonmembers", "n_target_test"),
    *("n_shadow_members", "n_shadow_nonmembers", "vocab_threshold", "max_caption_len", "trunk_input_size"),
    *("pretrain_epochs", "embed_size", "hidden_size", "epochs", "batch_size", "vgg_pool", "n_val"),
    *("augment_views", "beam_width", "mfe_feature_size", "mfe_hidden", "mfe_epochs", "mfe_batch_size"),
    *("fb_batch_size", "fb_max_epochs", "fb_patience", "med_n_studies", "med_image_size"),
    *("med_n_target_members", "med_n_target_nonmembers", "med_n_target_test", "med_n_shadow_members"),
    *("med_n_shadow_nonmembers", "med_vocab_threshold", "med_max_len", "med_d_model", "med_layers"),
    *("med_heads", "med_d_ff", "med_memory_size", "med_topk", "med_epochs", "med_batch_size"),
    *("med_beam_width", "med_lstm_epochs", "def_dp_batch_size", "def_dp_norm_groups", "tts_n_members"),
    *("tts_n_nonmembers", "tts_n_test", "tts_n_public", "tts_d_model", "tts_enc_layers", "tts_dec_layers"),
    *("tts_heads", "tts_d_ff", "tts_kernel", "tts_epochs", "tts_batch_size", "tts_fb_dim", "tts_fb_epochs"),
    *("calib_population_z", "def_dp_members", "def_dp_nonmembers", "def_dp_test", "def_dp_embed_size"),
    "def_dp_hidden_size",
    *("clip_members_per_count", "clip_nonmembers", "clip_candidates", "clip_attack_images", "clip_draws"),
    *("clip_tau", "clip_filler", "clip_pair_queries", "clip_known_nonmembers", "clip_aug_views"),
    *("clip_image_size", "clip_patch_size", "clip_width", "clip_layers", "clip_heads", "clip_embed_dim"),
    *("clip_context", "clip_epochs", "clip_batch_size", "clip_calib_base"),
    *("mim_population", "mim_shadow", "mim_probe", "mim_image_size", "mim_patch_size", "mim_width"),
    *("mim_layers", "mim_decoder_width", "mim_decoder_layers", "mim_epochs", "mim_batch_size"),
    *("mim_attack_masks", "mim_aug_views"),
)
# integer fields where 0 means something (none / all / automatic): >= 0
_NON_NEGATIVE_INTS: tuple[str, ...] = (
    *("seed", "min_public", "pretrain_images", "n_bootstrap", "med_min_public", "def_dp_passes"),
    "def_dp_public_passes",
    *("calib_views", "def_dp_canaries", "clip_name_only", "clip_name_only_count", "clip_calib_models"),
    "mim_calib_models",
)
# real fields: learning rates, the SVM's C and the clipping norm > 0; penalties >= 0
_POSITIVE_REALS: tuple[str, ...] = (
    *("lr", "pretrain_lr", "mfe_lr", "fb_lr", "med_lr", "tts_lr", "mb_svm_c", "def_dp_max_grad_norm"),
    *("calib_min_std", "def_dp_lr", "clip_lr", "mim_lr"),
)
_NON_NEGATIVE_REALS: tuple[str, ...] = (
    *("weight_decay", "med_weight_decay", "mfe_cov_weight", "clip_weight_decay", "mim_weight_decay"),
)
_OPEN_FRACTIONS: tuple[str, ...] = (
    *("mfe_holdout", "fb_val_fraction", "def_dp_delta", "mim_mask_ratio", "mim_attack_ratio"),
)  # 0 < x < 1
_DROPOUTS: tuple[str, ...] = ("med_dropout", "tts_dropout", "calib_view_jitter")  # 0 <= x < 1
_BOOLS: tuple[str, ...] = (
    *("scale_splits_to_data", "train_augment", "mb_smoothing", "mb_svm_scale", "fb_signed", "def_augment"),
    "tts_variance",
    "mim_norm_pix",
)
# fields with their own checks in config_problems
_TUPLES: tuple[str, ...] = (
    *("datasets", "families", "mb_features", "def_dp_epsilons", "def_weight_decays", "tts_real_corpora"),
    *("train_seeds", "calib_models", "calib_ablation", "calib_rmia_a", "calib_med_models"),
    *("calib_tts_models", "def_calib_models", "clip_inject_counts", "clip_k", "clip_size_sweep"),
    *("mim_ratio_sweep", "mim_masks_sweep", "mim_epoch_sweep", "mim_size_sweep"),
)
# every science field the validation covers (tests check no field is left out)
VALIDATED_FIELDS: frozenset[str] = frozenset(
    {"profile", *CHOICES, *_POSITIVE_INTS, *_NON_NEGATIVE_INTS, *_POSITIVE_REALS, *_NON_NEGATIVE_REALS}
    | {*_OPEN_FRACTIONS, *_DROPOUTS, *_BOOLS, *_TUPLES}
)


def _unknown_field_message(name: str, valid: list[str]) -> str:
    """``unknown config field 'epoch'; did you mean epochs, ...?`` (all valid names if none is close)."""
    import difflib

    close = difflib.get_close_matches(str(name), valid, n=4, cutoff=0.6)
    if close:
        return f"unknown config field {name!r}; did you mean {', '.join(close)}?"
    return f"unknown config field {name!r} (no close match); valid fields: {', '.join(valid)}"


def _names(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(values)


def _tuple_problems(cfg: Config) -> list[str]:
    """Problems of the tuple fields: empty where a value is needed, unknown or repeated names."""
    from m4i_utils.data.datasets import DATASET_LETTERS

    out = []
    known = (*SYNTHETIC_DATASETS, *REAL_DATASETS)
    for name, valid, what in (("datasets", known, "dataset"), ("families", tuple(TRUNK_NAMES), "family")):
        value = getattr(cfg, name)
        if not isinstance(value, tuple) or not value:
            out.append(f"{name}={value!r}: must name at least one {what}; choose from: {_names(valid)}")
            continue
        for item in value:
            if item not in valid:
                out.append(f"unknown {what} {item!r} in {name}={value!r}; choose from: {_names(valid)}")
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            out.append(f"{name}={value!r}: {_names(repeated)} listed more than once; list each once")
    by_letter: dict[str, list[str]] = {}
    for d in dict.fromkeys(cfg.datasets if isinstance(cfg.datasets, tuple) else ()):
        by_letter.setdefault(DATASET_LETTERS.get(d, str(d)[:1].upper()), []).append(d)
    for letter, names in by_letter.items():
        if len(names) > 1:
            out.append(
                f"datasets={cfg.datasets!r}: {_names(names)} share the model-name letter {letter!r}, so "
                "their models would get the same name; run them separately"
            )
    feats = cfg.mb_features
    if not isinstance(feats, tuple) or not feats:
        out.append(f"mb_features={feats!r}: must name at least one feature (bleuN, rougeN or rougeL)")
    else:
        import re

        for f in feats:
            if not (isinstance(f, str) and re.fullmatch(r"bleu[1-9]\d*|rouge[1-9]\d*|rougeL", f)):
                out.append(
                    f"unknown caption feature {f!r} in mb_features={feats!r}; use bleuN, rougeN or rougeL "
                    "(e.g. bleu1, bleu2, bleu3, rouge1, rouge2, rougeL)"
                )
        if len(set(feats)) != len(feats):
            out.append(f"mb_features={feats!r}: a feature is listed more than once")
    seeds = cfg.train_seeds
    if not (isinstance(seeds, tuple) and seeds and all(isinstance(v, int) and v >= 0 for v in seeds)):
        out.append(f"train_seeds={seeds!r}: must be a non-empty list of integers >= 0 (e.g. 0,1,2)")
    elif len(set(seeds)) != len(seeds):
        out.append(f"train_seeds={seeds!r}: a seed is listed more than once")
    if cfg.executor == "dask" and not cfg.dask_address:
        out.append("executor='dask' needs dask_address (the scheduler, e.g. tcp://host:8786)")
    if not isinstance(cfg.workers, int) or cfg.workers < 1:
        out.append(f"workers={cfg.workers!r}: must be an integer >= 1")
    if not isinstance(cfg.calib_models, int) or cfg.calib_models < 2:
        out.append(f"calib_models={cfg.calib_models!r}: must be an integer >= 2 (the target + references)")
    else:
        refs, ablation = cfg.calib_models - 1, cfg.calib_ablation
        ok = isinstance(ablation, tuple) and all(isinstance(k, int) and 1 <= k <= refs for k in ablation)
        if not ok:
            out.append(
                f"calib_ablation={ablation!r}: each entry must be an integer from 1 to calib_models - 1 "
                f"= {refs}"
            )
    if not isinstance(cfg.def_calib_models, int) or cfg.def_calib_models < 2:
        out.append(
            f"def_calib_models={cfg.def_calib_models!r}: must be an integer >= 2 (the target + references)"
        )
    for name, part in (("calib_med_models", "medical"), ("calib_tts_models", "speech")):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value == 1 or value < 0:
            out.append(
                f"{name}={value!r}: must be 0 (no {part} part) or an integer >= 2 (the target + references)"
            )
    if not (_is_real(cfg.calib_rmia_a) and 0 <= cfg.calib_rmia_a <= 1):
        out.append(f"calib_rmia_a={cfg.calib_rmia_a!r}: must be a number from 0 to 1")
    if not isinstance(cfg.threads, int) or cfg.threads < 0:
        out.append(f"threads={cfg.threads!r}: must be an integer >= 0 (0: every core)")
    for name, low, what in (("def_dp_epsilons", 0.0, "> 0"), ("def_weight_decays", None, ">= 0")):
        value = getattr(cfg, name)
        ok = isinstance(value, tuple) and all(
            _is_real(v) and (v > low if low is not None else v >= 0) for v in value
        )
        if not ok:
            out.append(f"{name}={value!r}: must be a (possibly empty) list of numbers, each {what}")
    for name, empty_ok in (("clip_inject_counts", False), ("clip_k", False), ("clip_size_sweep", True)):
        value = getattr(cfg, name)
        ok = isinstance(value, tuple) and (value or empty_ok)
        if not (ok and all(isinstance(v, int) and v >= 1 for v in value) and len(set(value)) == len(value)):
            what = "a (possibly empty)" if empty_ok else "a non-empty"
            out.append(f"{name}={value!r}: must be {what} list of distinct integers >= 1")
    corpora = cfg.tts_real_corpora
    from m4i_utils.data.speech import SPEECH_FOLDERS

    if not isinstance(corpora, tuple) or len(corpora) != 2 or corpora[0] == corpora[1]:
        out.append(
            f"tts_real_corpora={corpora!r}: needs two different corpus names (members', other speakers'); "
            f"choose from: {_names(tuple(SPEECH_FOLDERS))}"
        )
    else:
        for c in corpora:
            if c not in SPEECH_FOLDERS:
                out.append(
                    f"unknown speech corpus {c!r} in tts_real_corpora={corpora!r}; "
                    f"choose from: {_names(tuple(SPEECH_FOLDERS))}"
                )
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# (fields, check, what a valid value is): the scalar rules of config_problems, in reporting order
_SCALAR_RULES: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (_POSITIVE_INTS, lambda v: _is_int(v) and v >= 1, "must be positive (an integer >= 1)"),
    (_NON_NEGATIVE_INTS, lambda v: _is_int(v) and v >= 0, "must be non-negative (an integer >= 0)"),
    (_POSITIVE_REALS, lambda v: _is_real(v) and v > 0, "must be a number > 0"),
    (_NON_NEGATIVE_REALS, lambda v: _is_real(v) and v >= 0, "must be a number >= 0"),
    (_OPEN_FRACTIONS, lambda v: _is_real(v) and 0 < v < 1, "must be a fraction strictly between 0 and 1"),
    (_DROPOUTS, lambda v: _is_real(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    (_BOOLS, lambda v: isinstance(v, bool), "must be true or false"),
)


def _clip_problems(cfg: Config) -> list[str]:
    """Cross-field problems of the CLIP study (notebook 11)."""
    from m4i_utils.attacks.idia import TEMPLATES

    out = []
    if cfg.clip_width % cfg.clip_heads:
        out.append(
            f"clip_heads={cfg.clip_heads!r}: must divide clip_width={cfg.clip_width} (attention heads)"
        )
    if cfg.clip_image_size % cfg.clip_patch_size:
        out.append(
            f"clip_patch_size={cfg.clip_patch_size!r}: must divide clip_image_size={cfg.clip_image_size}"
        )
    if max(cfg.clip_k) > cfg.clip_attack_images:
        out.append(
            f"clip_k={cfg.clip_k!r}: the largest k must be <= clip_attack_images={cfg.clip_attack_images} "
            "(the held-out images per person)"
        )
    if cfg.clip_tau > len(TEMPLATES):
        out.append(f"clip_tau={cfg.clip_tau!r}: must be <= {len(TEMPLATES)} (the prompt templates)")
    people = len(cfg.clip_inject_counts) * cfg.clip_members_per_count + cfg.clip_nonmembers
    if cfg.clip_candidates < people + cfg.clip_name_only:
        out.append(
            f"clip_candidates={cfg.clip_candidates}: must be >= the {people} evaluated people + "
            f"clip_name_only={cfg.clip_name_only} controls (every one of them is a candidate name)"
        )
    if cfg.clip_filler_world == cfg.clip_cross_world:
        out.append(f"clip_cross_world={cfg.clip_cross_world!r}: must differ from clip_filler_world")
    need = max((cfg.clip_filler, *cfg.clip_size_sweep)) + cfg.clip_pair_queries + cfg.clip_known_nonmembers
    if cfg.clip_source == "synthetic" and cfg.n_pairs < need:
        out.append(
            f"n_pairs={cfg.n_pairs}: the CLIP study draws {need} pairs of {cfg.clip_filler_world} (the "
            "largest filler of clip_filler / clip_size_sweep + clip_pair_queries + clip_known_nonmembers); "
            "raise n_pairs or lower those sizes"
        )
    if cfg.clip_pair_queries > min((cfg.clip_filler, *cfg.clip_size_sweep)):
        out.append(
            f"clip_pair_queries={cfg.clip_pair_queries}: must be <= the smallest filler size "
            f"{min((cfg.clip_filler, *cfg.clip_size_sweep))} (every model trains on the member queries)"
        )
    if cfg.clip_calib_models == 1:
        out.append("clip_calib_models=1: must be 0 (no calibrated attack) or >= 2 (the target + references)")
    if cfg.clip_calib_base > cfg.clip_filler - cfg.clip_pair_queries:
        out.append(
            f"clip_calib_base={cfg.clip_calib_base}: must be <= clip_filler - clip_pair_queries = "
            f"{cfg.clip_filler - cfg.clip_pair_queries} (filler pairs that are not member queries)"
        )
    if cfg.clip_name_only * cfg.clip_name_only_count > cfg.clip_filler - cfg.clip_pair_queries:
        out.append(
            f"clip_name_only={cfg.clip_name_only} x clip_name_only_count={cfg.clip_name_only_count}: more "
            f"name-only captions than the {cfg.clip_filler - cfg.clip_pair_queries} filler pairs that are "
            "not member queries"
        )
    return out


def parse_mae_size(text: str) -> tuple[int, int]:
    """``"WIDTHxLAYERS"`` (an entry of ``mim_size_sweep``) -> ``(width, layers)``.

    Raises:
        ValueError: not two positive integers joined by ``x`` (the message names the entry).
    """
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"mim_size_sweep entry {text!r}: write the encoder size as WIDTHxLAYERS, e.g. 64x2")
    return int(parts[0]), int(parts[1])


def _mim_problems(cfg: Config) -> list[str]:
    """Cross-field and tuple problems of the masked-image-modeling study (notebook 12)."""
    out = []
    if cfg.mim_image_size % cfg.mim_patch_size:
        out.append(f"mim_patch_size={cfg.mim_patch_size!r}: must divide mim_image_size={cfg.mim_image_size}")
    for name in ("mim_population", "mim_shadow", "mim_probe"):
        if getattr(cfg, name) < 4:
            out.append(f"{name}={getattr(cfg, name)!r}: must be >= 4 (it is split into two halves)")
    if cfg.mim_calib_models == 1:
        out.append("mim_calib_models=1: must be 0 (no calibrated attack) or >= 2 (the target + references)")
    for name, ok, rule in (
        ("mim_ratio_sweep", lambda v: _is_real(v) and 0 < v < 1, "fractions strictly between 0 and 1"),
        ("mim_masks_sweep", lambda v: _is_int(v) and v >= 1, "integers >= 1"),
        ("mim_epoch_sweep", lambda v: _is_int(v) and v >= 1, "integers >= 1"),
    ):
        value = getattr(cfg, name)
        if not isinstance(value, tuple) or not all(ok(v) for v in value):
            out.append(f"{name}={value!r}: must be {rule} (may be empty)")
    for entry in cfg.mim_size_sweep if isinstance(cfg.mim_size_sweep, tuple) else (cfg.mim_size_sweep,):
        try:
            parse_mae_size(entry)
        except ValueError as exc:
            out.append(str(exc))
    need = cfg.mim_population + cfg.mim_shadow + cfg.mim_probe
    if cfg.mim_source == "synthetic" and cfg.n_pairs < need:
        out.append(
            f"n_pairs={cfg.n_pairs}: the MIM study draws {need} images of {cfg.mim_world} (mim_population + "
            "mim_shadow + mim_probe); raise n_pairs or lower those sizes"
        )
    return out


def config_problems(cfg: Config) -> list[str]:
    """Every problem of ``cfg``, one message each naming the field, the bad value and the valid range or
    choices (empty when the configuration is valid)."""
    out = []
    if cfg.profile not in PROFILES:
        out.append(f"unknown profile {cfg.profile!r}; choose one of: {_names(sorted(PROFILES))}")
    for name, valid in CHOICES.items():
        value = getattr(cfg, name)
        if value not in valid:
            out.append(f"unknown {name} {value!r}; choose one of: {_names(valid)}")
    for names, ok, rule in _SCALAR_RULES:
        for name in names:
            value = getattr(cfg, name)
            if not ok(value):
                out.append(f"{name}={value!r}: {rule}")
    out += _tuple_problems(cfg)
    if out:  # the cross-field checks below assume well-typed fields
        return out
    for model, heads in (("med_d_model", "med_heads"), ("tts_d_model", "tts_heads")):
        if getattr(cfg, model) % getattr(cfg, heads):
            value, width = getattr(cfg, heads), getattr(cfg, model)
            out.append(f"{heads}={value!r}: must divide {model}={width} (attention heads)")
    out += _clip_problems(cfg)
    out += _mim_problems(cfg)
    if cfg.tts_kernel % 2 == 0:
        out.append(f"tts_kernel={cfg.tts_kernel!r}: must be odd (the FFT convolutions keep the length)")
    synthetic = [d for d in cfg.datasets if d in SYNTHETIC_DATASETS]
    need = _split_need(cfg)
    if synthetic and cfg.n_pairs < need:
        out.append(
            f"n_pairs={cfg.n_pairs}: the synthetic dataset(s) {_names(synthetic)} would hold {cfg.n_pairs} "
            f"pairs but the split sizes need {need} ({_split_detail(cfg)}); raise n_pairs to >= {need} "
            "or lower the n_* sizes or min_public"
        )
    return out


def validate_config(cfg: Config) -> Config:
    """``cfg`` if every field is in its range or among its choices.

    Raises:
        ValueError: all problems of :func:`config_problems`, one per line.
    """
    problems = config_problems(cfg)
    if len(problems) == 1:
        raise ValueError(f"invalid configuration: {problems[0]}")
    if problems:
        raise ValueError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return cfg


def _validate(cfg: Config) -> None:
    validate_config(cfg)


def grid_combinations(overrides: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of a grid's comma-separated override values (keys sorted), one dict per cell."""
    import itertools

    keys = sorted(overrides)
    values = [str(overrides[k]).split(",") for k in keys]
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*values)]


def validate_overrides(profile: str, overrides: dict[str, Any], *, grid: bool = False) -> list[Config]:
    """Command-line check, before any notebook runs: ``profile`` plus ``overrides`` must resolve
    (:func:`resolve_profile`); for a grid every combination of the comma-separated values must.

    Returns:
        The resolved configs: one, or one per grid cell in :func:`grid_combinations` order.
    Raises:
        SystemExit: with the message of the first invalid configuration (it names the field, the bad value
            and the valid range or choices).
    """
    configs = []
    for combo in grid_combinations(overrides) if grid else [dict(overrides)]:
        try:
            configs.append(resolve_profile(profile, combo))
        except ValueError as exc:
            where = f"grid cell {combo}: " if grid else ""
            raise SystemExit(f"error: {where}{exc}") from exc
    return configs


# ------------------------------------------------------------------------------------------- split sizes


def _split_sizes(cfg: Config) -> dict[str, int]:
    names = ("n_target_members", "n_target_nonmembers", "n_target_test", "n_shadow_members")
    return {n: getattr(cfg, n) for n in (*names, "n_shadow_nonmembers", "min_public")}


def _split_need(cfg: Config) -> int:
    """Pairs the split sizes need: every role plus the public split's minimum."""
    return sum(_split_sizes(cfg).values())


def _split_detail(cfg: Config) -> str:
    return " + ".join(f"{k}={v}" for k, v in _split_sizes(cfg).items())


def fit_splits_to_data(cfg: Config, n_records: int, dataset: str) -> tuple[Config, str | None]:
    """The config ``dataset``'s splits are made with, and a note when its split sizes were scaled.

    One rule for every dataset: when it holds at least the pairs the split sizes need, ``(cfg, None)``.
    Otherwise an error, unless ``cfg.scale_splits_to_data`` is set: then the split sizes are scaled to the
    data (:func:`scaled_to`) and the note says so (callers print it).

    Raises:
        DataError: the dataset is too small for the split sizes (names the dataset, how many pairs it holds
            and how many the split sizes need) and scaling was not asked for.
    """
    from m4i_utils.data.records import DataError

    need = _split_need(cfg)
    if n_records >= need:
        return cfg, None
    detail = f"{_split_detail(cfg)} = {need} pairs"
    if not cfg.scale_splits_to_data:
        raise DataError(
            f"dataset {dataset!r} holds {n_records} pairs, but the split sizes need {need} ({detail}). Lower "
            "the n_* sizes or min_public, use a larger dataset, or set scale_splits_to_data=true to scale "
            "the splits to the data (30/30/10/10/10/10 %)."
        )
    scaled = scaled_to(cfg, n_records)
    sizes = ", ".join(f"{k}={v}" for k, v in _split_sizes(scaled).items())
    note = (
        f"scale_splits_to_data: dataset {dataset!r} holds {n_records} pairs, fewer than the {need} the split "
        f"sizes need ({detail}); its splits are scaled to {sizes}"
    )
    return scaled, note


def scaled_to(cfg: Config, n_records: int) -> Config:
    """``cfg`` with split sizes scaled to a small real corpus of ``n_records`` pairs.

    Used for the real Flickr8k subset (1,000 images): 30% target members, 30% target non-members, 10% target
    test, 10% shadow members, 10% shadow non-members, 10% public. Everything else is unchanged. An explicit
    call; the pipeline scales only through :func:`fit_splits_to_data` (opt-in ``scale_splits_to_data``).

    Raises:
        DataError: fewer than 10 pairs (every role would be empty).
    """
    from m4i_utils.data.records import DataError

    tenth = n_records // 10
    if tenth < 1:
        raise DataError(f"cannot scale the split sizes to {n_records} pairs: at least 10 are needed")
    return dataclasses.replace(
        cfg,
        n_target_members=3 * tenth,
        n_target_nonmembers=3 * tenth,
        n_target_test=tenth,
        n_shadow_members=tenth,
        n_shadow_nonmembers=tenth,
        min_public=min(cfg.min_public, n_records - 9 * tenth),
    )
