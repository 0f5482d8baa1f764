"""The experiment list as data: the rows (references, then networks), the sdgs ablations, the published
numbers, the protocol's constants and one run's settings. Nothing here runs anything."""

from __future__ import annotations

from dataclasses import dataclass, replace

from dfd_models.networks import MODELS


@dataclass(frozen=True)
class Row:
    """One row: a model trained on the recipe's data (or on small+large, ``large``), its config
    updated with ``config`` (``model.config`` keys), at peak learning rate ``lr`` (None: the
    command's ``--lr``, or ``--sdgs-lr`` for the self-supervised models). ``main`` rows are
    scored on both draws; the others on the first only."""

    model: str
    label: str
    large: bool = False
    config: tuple[tuple[str, object], ...] = ()
    run_name: str | None = None
    lr: float | None = None
    main: bool = True

    @property
    def sets(self) -> list[str]:
        """The ``--set`` overrides of ``config``."""
        return [f"model.config.{key}={value}" for key, value in self.config]

    @property
    def run(self) -> str:
        """Run directory name under ``OUT/runs``."""
        return self.run_name or (f"{self.model}+large" if self.large else self.model)

    @property
    def self_supervised(self) -> bool:
        """Trained without labels (``sdgs``, ``sdgs_stack``): its rows show the spread of training seeds."""
        spec = MODELS.get(self.model)
        return bool(spec and spec.trainable and not spec.supervised)


#: The blur features' scales (px) of the defocusnet-blur row and of ``--blur-features``.
BLUR_SCALES_PX = [0.5, 1.0, 2.0, 4.0]

#: The results page of each recipe the benchmark is run on (docs/).
RESULT_PAGES = {"small_obj": "RESULTS.md", "fod500": "RESULTS_fod500.md"}

#: Reference predictors: no trainable parameters. Every table shows them.
REFERENCES = [
    Row("constant", "constant (training median, all pixels: the wall's depth)"),
    Row("constant", "constant (training median of object pixels)", config=(("region", "objects"),),
        run_name="constant-objects"),
    Row("dff", "classical depth from focus"),
    Row("dff", "classical depth from focus, full frame (depth beyond the focus sweep from its blur)",
        config=(("beyond_range", "extrapolate"),), run_name="dff-full"),
    Row("dfd_sweep", "depth from defocus by re-rendering sweep (sdgs's teacher)"),
]
#: The reference every row must beat on all pixels, and the one on objects (run names).
ALL_PIXEL_REFERENCE, OBJECT_REFERENCE = "constant", "dff"
#: Rows in table order.
ROWS = REFERENCES + [
    Row("ddff", "DDFF"), Row("lstm_ddff", "LSTM-DDFF"), Row("recurrent_ae", "recurrent AE", lr=1e-3),
    Row("recurrent_ae", "recurrent AE, small+large objects", large=True, lr=1e-3, main=False),
    Row("defocusnet", "DefocusNet (PoolNet)", lr=1e-3),
    Row("defocusnet", "DefocusNet (PoolNet) + blur features, narrower", run_name="defocusnet-blur", lr=1e-3,
        config=(("coc_channels", [16, 32, 64]), ("depth_channels", [16, 32, 64]),
                ("blur_scales_px", BLUR_SCALES_PX))),
    # the whole frame: the network's depth learns the objects, a wall head where the wall is and how far
    Row("defocusnet", "DefocusNet (PoolNet), whole frame (regions split: a wall head beside it)", lr=1e-3,
        config=(("regions", "split"),), run_name="defocusnet-split", main=False),
    Row("sdgs", "SDGS (self-supervised, one frame in)"),
    Row("sdgs_stack", "SDGS-stack (self-supervised, the stack in)"),
]
#: sdgs and sdgs_stack with one design choice removed each (dfd_models/networks/sdgs.py), same budget as the model.
ABLATIONS = [
    Row("sdgs", "no splat re-rendering: depth learns from the re-rendering sweep alone",
        config=(("w_photometric", 0.0),), run_name="sdgs-no_photometric"),
    Row("sdgs", "no re-rendering sweep: depth and defocus maps learn from the splat re-rendering alone",
        config=(("w_sweep", 0.0),), run_name="sdgs-no_sweep"),
    Row("sdgs", "sweep pixels not balanced across inverse depth (the wall outweighs the objects)",
        config=(("balance_bins", 0),), run_name="sdgs-no_balance"),
    Row("sdgs", "DepthNet predicts depth freely, not as a correction of the defocus map's 1/F - c/k",
        config=(("depth_from_defocus", False),), run_name="sdgs-free_depth"),
    Row("sdgs", "no single-image blur features (focus-measure ratios across scales)",
        config=(("blur_scales_px", []),), run_name="sdgs-no_blur_features"),
    Row("sdgs", "radiance = the input frame, not the stack's sharpest pixels",
        config=(("radiance", "frame"),), run_name="sdgs-radiance_frame"),
    Row("sdgs", "re-renders the input frame and one other, not every frame",
        config=(("render_frames", "pair"),), run_name="sdgs-render_pair"),
    Row("sdgs", "sees the middle frame, not the nearest-focus one",
        config=(("input_frame", "middle"),), run_name="sdgs-input_middle"),
    Row("sdgs", "photometric error on linear RGB (gamma 1)",
        config=(("photometric_gamma", 1.0),), run_name="sdgs-linear"),
    Row("sdgs_stack", "no splat re-rendering: depth learns from the re-rendering sweep alone",
        config=(("w_photometric", 0.0),), run_name="sdgs_stack-no_photometric"),
    Row("sdgs_stack", "DepthNet without the views' blur features",
        config=(("depth_blur_features", False),), run_name="sdgs_stack-no_depth_blur_features"),
    Row("sdgs_stack", "DepthNet sees the two end frames, not every frame",
        config=(("depth_views", "ends"),), run_name="sdgs_stack-ends"),
    Row("sdgs_stack", "sweep term in inverse depth, not log depth",
        config=(("sweep_space", "inverse"),), run_name="sdgs_stack-inverse_sweep"),
]
#: Published synthetic test numbers (MSE and RMS of depth normalised to [0, 1], accuracy %).
PUBLISHED = {
    "DDFF": (1.8e-3, 0.041, 86.78),
    "LSTM-DDFF": (1.1e-3, 0.033, 94.98),
    "recurrent AE": (3.4e-3, 0.058, 69.02),
    "recurrent AE, small+large objects": (3.2e-3, 0.056, 70.77),
}
#: Published numbers on DefocusNet's synthetic data (what fod500 imitates): delta1, RMSE (m), AbsRel.
PUBLISHED_FOD = {
    "DEReD (self-supervised; Si et al., CVPR 2023)": (0.746, 0.351, 0.177),
    "DefocusNet (supervised; Maximov et al., CVPR 2020), as reported by DEReD": (0.912, None, None),
}
#: Frames per focus stack (one ramp per scene).
FRAMES = 5
#: Shares of the scenes in the train, validation and test splits, drawn per scene.
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
#: The recipe seeds of the two draws and their data folders under OUT (the first is the recipe's own seed).
DRAWS = {0: "data", 1: "data-seed1"}
#: What every choice is made on: validation object AbsRel (``train.best_metric``).
SELECT_ON = ("objects", "abs_rel")
#: Validations per training run (the best one's checkpoint is scored).
VALIDATIONS = 10
#: Test stacks drawn in the figure.
FIGURE_STACKS = 4


@dataclass(frozen=True)
class Settings:
    """One run of the benchmark: its data, its training budget and what the supervised networks are
    given. The defaults are the command line's (``benchmarks/results_table.py``), which reads its options
    into this by field name.

    Attributes:
        recipe: the dataset's recipe (``small_obj`` or ``fod500``).
        scenes: scenes rendered per draw (train + val + test).
        large_scenes: ``large_obj`` scenes rendered for the small+large row (0: no such row).
        size: image width and height, px.
        crop: training crop width and height, px.
        samples: Cycles samples per pixel.
        steps: training steps per supervised network.
        sdgs_steps: training steps of the self-supervised models (None: ``steps``).
        ablation_steps: training steps of each ablation row (None: ``sdgs_steps``; 0: no ablation).
        batch_size: stacks per training batch.
        lr, sdgs_lr: peak learning rates of the supervised and the self-supervised networks.
        lr_grid: candidate peak learning rates of every supervised row, chosen on validation (None: the
            row's one rate).
        seeds: training seeds of the self-supervised rows and of the ablation.
        draws: draws of the data (1 or 2, the first ``DRAWS``).
        regions: the pixels the supervised networks train on (model config ``regions``).
        wall_weight: weight of the wall in the supervised losses (None: the model's).
        init_at_constant: the supervised networks start at the all-pixel constant's depth.
        depth_space: depth map and loss space of the supervised networks (None: the model's).
        blur_features: every supervised network gets :data:`BLUR_SCALES_PX`'s blur features.
    """

    recipe: str = "small_obj"
    scenes: int = 160
    large_scenes: int = 0
    size: int = 64
    crop: int = 64
    samples: int = 64
    steps: int = 600
    sdgs_steps: int | None = None
    ablation_steps: int | None = None
    batch_size: int = 4
    lr: float = 3e-4
    sdgs_lr: float = 1e-3
    lr_grid: list[float] | None = None
    seeds: int = 2
    draws: int = 2
    regions: str = "objects"
    wall_weight: float | None = None
    init_at_constant: bool = False
    depth_space: str | None = None
    blur_features: bool = False

    def __post_init__(self) -> None:
        # the step counts default to the ones before them; resolved once so every reader sees an int
        if self.sdgs_steps is None:
            object.__setattr__(self, "sdgs_steps", self.steps)
        if self.ablation_steps is None:
            object.__setattr__(self, "ablation_steps", self.sdgs_steps)

    def steps_of(self, row: Row) -> int:
        """Training steps of ``row`` on a draw."""
        return self.sdgs_steps if row.self_supervised else self.steps

    def lr_of(self, row: Row) -> float:
        """``row``'s own peak learning rate, else the command's for its kind."""
        return row.lr or (self.sdgs_lr if row.self_supervised else self.lr)


def recipe_overrides(recipe: str, scenes: int, size: int, samples: int, seed: int = 0) -> list[str]:
    """``--set`` overrides of ``recipe`` for the benchmark's dataset (fod500 keeps its 5-frame list)."""
    ramp = [] if recipe == "fod500" else ["focus.ramps=1", f"focus.frames_per_ramp={FRAMES}"]
    return [f"count={scenes}", f"image.width={size}", f"image.height={size}", f"image.samples={samples}",
            *ramp, *(f"splits.{name}={share}" for name, share in SPLITS.items()),
            *([f"seed={seed}"] if seed else [])]


def table_rows(settings: Settings, only: list[str] | None = None) -> list[Row]:
    """:data:`ROWS` to run: the references and the rows named in ``only`` (run names; None: all), the
    supervised networks' labels saying what ``settings`` gives them beyond their defaults."""
    rows = [row for row in ROWS if row in REFERENCES or only is None or row.run in only]
    changes = ([f"depth_space {settings.depth_space}"] if settings.depth_space else []) + (
        ["blur features"] if settings.blur_features else [])
    if not changes:
        return rows
    return [replace(row, label=f"{row.label} ({', '.join(changes)})")
            if MODELS.get(row.model) and MODELS[row.model].supervised and MODELS[row.model].trainable else row
            for row in rows]
