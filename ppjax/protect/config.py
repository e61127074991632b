"""What `ppjax protect` is asked to do, as one frozen, validated value.

The choices are Enums, so the command line's ``--help`` and its validation come from here, and a
library caller gets the same checks: :class:`ProtectConfig` raises ``ValueError`` for any
combination that cannot run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from ppjax import attacks
from ppjax.store.registry import MODEL_GROUPS

__all__ = ["PERCEPTUAL_EPS", "budget_of", "parse_delta_e", "parse_mottle", "perceptual_of", "ATTACK_DEFAULTS", "DEFAULT_MIN_PSNR", "STRENGTHS", "Strength", "attack_defaults", "default_batch_size", "Backend", "Channel", "Method", "ObjectiveKind", "OutputFormat", "Penalty", "ProtectConfig"]

#: The attack methods, one member per row of :data:`ppjax.attacks.METHODS`.
Method = enum.Enum("Method", {name.upper(): name for name in attacks.METHODS}, type=str)
Method.__doc__ = "An attack method (see :data:`ppjax.attacks.METHODS`)."


class ObjectiveKind(str, enum.Enum):
    """ce: away from the predicted class; margin: C&W margin; sensitive: out of all 60 sensitive
    Places365 scenes (places365 only)."""

    CE = "ce"
    MARGIN = "margin"
    SENSITIVE = "sensitive"


class OutputFormat(str, enum.Enum):
    """The protected file's format: png (lossless), jpeg, or auto: the input's own kind (a JPEG or
    an iPhone's HEIC gives a JPEG, as sharing platforms keep them; anything else a PNG)."""

    AUTO = "auto"
    PNG = "png"
    JPEG = "jpeg"

    def suffix_for(self, source: Path) -> str:
        """The output's suffix for the input ``source``."""
        if self is OutputFormat.AUTO:
            return ".jpg" if Path(source).suffix.lower() in _LOSSY_INPUTS else ".png"
        return ".png" if self is OutputFormat.PNG else ".jpg"


#: Inputs that ``--format auto`` writes as JPEG.
_LOSSY_INPUTS = frozenset({".jpg", ".jpeg", ".heic", ".heif"})


class Channel(str, enum.Enum):
    """The threat model (see :mod:`ppjax.ops.channel`). social: the platform may shrink the photo
    and re-encode it as JPEG, and the attacker resizes it to 224 (the Places365 demo's 256 + centre
    224, or directly); exact: the classifier sees the written pixels as they are (MediaEval 2019)."""

    SOCIAL = "social"
    EXACT = "exact"


class Backend(str, enum.Enum):
    """Where the work runs. local: this process, on its devices; ray: a Ray cluster's workers
    (``ray.init(address=...)``, a local cluster when no address is given; extra ``ppjax[ray]``)."""

    LOCAL = "local"
    RAY = "ray"


class Penalty(str, enum.Enum):
    SSIM = "ssim"
    CIEDE2000 = "ciede2000"


class Strength(str, enum.Enum):
    """A named set of options (:data:`STRENGTHS`): low (subtler), mid (the defaults),
    high (more protection, more visible change)."""

    LOW = "low"
    MID = "mid"
    HIGH = "high"


#: What each ``--strength`` sets; an option given explicitly wins. ``mid`` is ppjax's defaults. The
#: margin and scale copies apply to the methods built on the common loop (cw and pfgsm keep theirs).
#: Each measured on the first 60 shared photos with its perceptual budget (README, "Strength
#: presets"), and with ``--delta-e off`` on all 300 (docs/benchmarks.md). ``lattice_steps``: the
#: whole-level steps after the rounding to bytes, where a photo lacks the margin there. mid's 12
#: attack steps and 4 lattice steps (20 and 10 before 2026-12-07): the PSNR floor, not the steps,
#: bounds what the attack reaches, and on the first 60 shared photos the held-out networks were
#: fooled as often in 29% less time (docs/scale.md, "Fewer steps"). mid's and high's ``focus`` of
#: 0.5 (0 before 2026-12-07): where the PSNR floor binds, steps weighted by the gradient's size
#: carried further to held-out networks (mid: on 210 shared photos, high: on 60) at the same PSNR
#: and visibility (docs/benchmarks.md, "Where the steps go"); low keeps 0 (on the first 60 photos
#: at 40 dB it moved the held-out columns by a photo or two either way, docs/benchmarks.md).
STRENGTHS = {
    "low": {"eps": 3.0, "steps": 10, "lattice_steps": 10, "margin": 5.0, "min_psnr": 40.0, "channel_rounds": 1, "scales": 1, "delta_e": "0.8,2", "mottle": "1.5", "focus": 0.0},
    "mid": {"eps": 4.0, "steps": 12, "lattice_steps": 4, "margin": 10.0, "min_psnr": 38.0, "channel_rounds": 3, "scales": 1, "delta_e": "1.2,3", "mottle": "2", "focus": 0.5},
    "high": {"eps": 6.0, "steps": 30, "lattice_steps": 10, "margin": 15.0, "min_psnr": 35.0, "channel_rounds": 3, "scales": 1, "delta_e": "1.8,4.5", "mottle": "3", "focus": 0.5},
}
#: The ``eps`` ball (1/255) around the perceptual budget, per strength, when no ``eps`` is given:
#: twice the ball alone's. The allowance, not the ball, bounds what shows; the wider ball lets the
#: change grow where texture hides it (measured, docs/visibility.md: at mid, 1.2,3 inside 8/255
#: carried over as well as the 4/255 ball alone to a held-out network and better to another
#: family, at a mean CIEDE2000 of 1.06 against 2.26). ``eps`` above is the ball alone's.
PERCEPTUAL_EPS = {"low": 6.0, "mid": 8.0, "high": 12.0}


def budget_of(method: str, strength: str, delta_e: str | None, eps: float | None) -> tuple[str, float | None]:
    """(``--delta-e``, ``--eps``) a run of ``method`` at ``strength`` takes from the ones given
    (None: not given): the strength's perceptual budget for :data:`ppjax.attacks.PERCEPTUAL_METHODS`
    and off for the others, and under a budget the ball :data:`PERCEPTUAL_EPS`; ``eps`` stays None
    where the strength's ball alone (``STRENGTHS[strength]["eps"]``) is the one to take."""
    if delta_e is None:
        delta_e = STRENGTHS[strength]["delta_e"] if method in attacks.PERCEPTUAL_METHODS else "off"
    if eps is None and parse_delta_e(delta_e) is not None:
        eps = PERCEPTUAL_EPS[strength]
    return delta_e, eps


def parse_mottle(text: str) -> float | None:
    """``--mottle``'s value: the cap on the change's low-frequency luminance contrast on smooth
    areas, in percent ("2": 2%), or "off" (None). Returned as a fraction."""
    text = str(text).strip().lower().removesuffix("%")
    if text in ("off", "none", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 100.0:
        raise ValueError(f"--mottle must be a contrast in percent, 0 < C < 100, or off; got {text!r}")
    return value / 100.0


def parse_delta_e(text: str) -> tuple[float, float] | None:
    """``--delta-e``'s value: "FLAT,BUSY" (CIEDE2000 allowances on flat areas and busy texture), one
    number for both, or "off" (None: the L-infinity ball alone)."""
    text = str(text).strip().lower()
    if text in ("off", "none", "0"):
        return None
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not 0 < parts[0] <= parts[1] or not all(p < 100 for p in parts):
        raise ValueError(f"--delta-e must be FLAT,BUSY with 0 < FLAT <= BUSY < 100 (CIEDE2000), one number, or off; got {text!r}")
    return parts[0], parts[1]


#: The defaults of the methods built on the common loop: the setting measured to carry over best to
#: a model the attack never saw, per unit of visible change (README, "Classifiers it never saw"):
#: a logit lead of 10 on the attacked models, input diversity at every step, TI smoothing, momentum
#: and the skip gradient at 0.5 (each of the last and the diversity at every step rather than 0.7
#: of them raised the held-out columns against MobileNetV2 at no cost: docs/benchmarks.md,
#: "Transfer parts against another design"); no scale copies (``--scales``), which carry over
#: further after JPEG and resizes but double the time at 3. The methods with loops of their own
#: (cw, pfgsm) take none of the parts and :data:`OWN_LOOP_MARGIN`; the edit methods keep the
#: diversity of 0.7 they were measured with (:data:`EDIT_DIVERSITY`).
ATTACK_DEFAULTS = {
    "margin": STRENGTHS["mid"]["margin"], "diversity": 1.0, "smoothing": 5, "momentum": 1.0, "scales": STRENGTHS["mid"]["scales"],
    "skip_gradient": 0.5, "ghost": 0.0, "spectrum": 0.0, "flip": 0.0,
}  # fmt: skip
#: The edit methods' input diversity: the setting their figures in docs/edits.md were measured with.
EDIT_DIVERSITY = 0.7
#: The edit methods' lattice steps: the setting their figures in docs/edits.md were measured with.
EDIT_LATTICE_STEPS = 10
#: The transfer parts off: what ``--diversity 0 --smoothing 0 --momentum 0 --scales 1 --skip-gradient 1 --ghost 0 --spectrum 0 --flip 0`` gives.
TRANSFER_OFF = {"diversity": 0.0, "smoothing": 0, "momentum": 0.0, "scales": 1, "skip_gradient": 1.0, "ghost": 0.0, "spectrum": 0.0, "flip": 0.0}
OWN_LOOP_MARGIN = 2.0
#: The smallest lead (logits) over the real panel's variants at which a photo is final: 0, so that
#: a later round goes only to a photo some variant still shows unprotected. At the attack's own
#: margin (10, as before 2026-12-07) the rounds also went to photos protected everywhere by less,
#: and cost a quarter of the time on the first 60 shared photos for no held-out protection
#: (docs/scale.md, "Later rounds").
PANEL_MARGIN = 0.0
#: The PSNR floor in dB that every written PNG keeps by default (0: none). Found per image, so a
#: photo that needs a larger change to be protected gets a smaller one, and may stay unprotected.
DEFAULT_MIN_PSNR = STRENGTHS["mid"]["min_psnr"]


def transfer_of(settings) -> attacks.Transfer:
    """The :class:`ppjax.attacks.Transfer` of the parts :data:`TRANSFER_OFF` names, read from the
    mapping ``settings``: protect's config and the robustness bench build it the same way."""
    return attacks.Transfer(**{name: settings[name] for name in TRANSFER_OFF})


def method_defaults(method: str, strength: str) -> dict:
    """``steps``, ``eps`` and ``lattice_steps`` an edit method takes when none are given (nothing
    for pixel methods): an edit's sliders need more steps than pixels (Adam from no edit), the
    hybrid's pixel noise goes on top of a visible edit, so it gets half the strength's budget, and
    the lattice steps stay at the 10 the edits' figures were measured with."""
    row = attacks.METHODS[method]
    return {"steps": row.steps, "eps": STRENGTHS[strength]["eps"] / 2, "lattice_steps": EDIT_LATTICE_STEPS} if row.edit else {}


def attack_defaults(method: str) -> dict:
    """Margin and transfer parts that ``method`` takes when none are given."""
    if attacks.METHODS[method].custom is not None:
        return {"margin": OWN_LOOP_MARGIN, **TRANSFER_OFF}
    if attacks.METHODS[method].edit:
        return {**ATTACK_DEFAULTS, "diversity": EDIT_DIVERSITY}
    return dict(ATTACK_DEFAULTS)


@dataclass(frozen=True)
class ProtectConfig:
    """Everything one protection run needs. ``eps`` is in 1/255 units; ``appeal`` None means 0, or 1
    for methods that steer by NIMA (``coupled``)."""

    inputs: tuple[Path, ...]
    out_dir: Path
    models: tuple[str, ...] = ("places365",)
    #: How an ensemble's members join into one objective: one of :data:`ppjax.attacks.FUSIONS`.
    ensemble: str = "loss"
    method: Method = Method("pgd")
    objective: ObjectiveKind = ObjectiveKind.CE
    channel: Channel = Channel.SOCIAL
    channel_draws: int = 2
    #: None here and in the fields below: what :attr:`strength` sets (:data:`STRENGTHS`; ``eps``
    #: from :data:`PERCEPTUAL_EPS` under a perceptual budget).
    channel_rounds: int | None = None
    #: The smallest lead (logits) over the real channel's variants that makes a photo final
    #: without a later round (:data:`PANEL_MARGIN`: protected on every variant).
    panel_margin: float = PANEL_MARGIN
    eps: float | None = None
    steps: int | None = None
    #: Whole-level steps after the rounding to bytes where a photo lacks the margin (0: none).
    lattice_steps: int | None = None
    #: Logit lead over the original class at which an image counts as protected and stops changing.
    #: None: :func:`attack_defaults`'s (10 on the common loop, 2 for cw and pfgsm).
    margin: float | None = None
    #: Transfer parts (see :mod:`ppjax.attacks.transfer`): input diversity probability, TI kernel
    #: side (0: off), momentum decay (0: off), scale copies (1: off), SGM's gamma on the attacked
    #: networks' residual branches (1: off), the ghost networks' skip factor half width (0: off),
    #: the spectrum simulation's DCT factor half width (0: off), the mirror's probability per step (0: off).
    #: None: :data:`ATTACK_DEFAULTS` for the methods built on the common loop, off for those with
    #: loops of their own (cw, pfgsm).
    diversity: float | None = None
    smoothing: int | None = None
    momentum: float | None = None
    scales: int | None = None
    skip_gradient: float | None = None
    ghost: float | None = None
    spectrum: float | None = None
    flip: float | None = None
    #: PSNR floor in dB against the original, per image (0: none); it holds for the written bytes of
    #: PNG output (JPEG adds the encoder's own change).
    min_psnr: float | None = None
    #: The perceptual budget: each pixel's CIEDE2000 allowance, "FLAT,BUSY" (flat areas, busy
    #: texture) inside the ``eps`` ball, or "off" (the ball alone). None: the strength's for the
    #: methods with sign steps (:data:`ppjax.attacks.PERCEPTUAL_METHODS`), off for the others.
    delta_e: str | None = None
    #: The cap on the change's low-frequency luminance contrast where the photo is smooth, in
    #: percent, or "off" (:mod:`ppjax.ops.mottle`): part of the perceptual budget, held by the
    #: attack and fitted on the bytes written. None: the strength's with a perceptual budget, off
    #: without one.
    mottle: str | None = None
    #: How far each pixel's step follows the size of its gradient, in [0, 1]
    #: (:class:`ppjax.attacks.PerceptualBudget`): part of the perceptual budget. None: the
    #: strength's with a perceptual budget, 0 without one.
    focus: float | None = None
    #: The preset that fills the options left None (:data:`STRENGTHS`).
    strength: Strength = Strength.MID
    seed: int = 0
    format: OutputFormat = OutputFormat.AUTO
    #: Write each photo's allowlisted camera details (:mod:`ppjax.io.metadata`: make, model, lens,
    #: capture time, exposure, ISO, focal length, flash, white balance); by default no metadata at all.
    keep_metadata: bool = False
    #: Name each output ``photo-<12 hex digits>`` in the output folder itself (a keyed digest of
    #: the name it would have had, :func:`ppjax.io.naming.private_name`), and record no input name:
    #: phones put the date and time a photo was taken in its name, and folders name places.
    private_names: bool = False
    #: Edit methods: a look (a name of :data:`ppjax.edits.looks.LOOKS` or a look's JSON file) the
    #: search starts from, instead of no edit.
    look: str | None = None
    #: With ``look``: apply it as it is, with no search of each photo's own (``steps`` 0).
    no_refine: bool = False
    #: ``look``'s sliders, read once (the file is not read again by the protector or the manifest).
    look_params: dict | None = field(default=None, init=False, repr=False, compare=False)
    jpeg_quality: int = 95
    jpeg_rounds: int = 3
    appeal: float | None = None
    penalty: Penalty | None = None
    penalty_weight: float = 10.0
    #: Photos per compiled program call; None: :func:`default_batch_size`.
    batch_size: int | None = None
    early_stop: bool = True
    overwrite: bool = False
    #: Local devices: "all" or how many (see :mod:`ppjax.protect.devices`); the bytes do not depend on it.
    devices: str = "all"
    #: This process's part of the inputs (see :mod:`ppjax.protect.shards`); None: from the scheduler's
    #: environment, else the whole list.
    num_shards: int | None = None
    shard_index: int | None = None
    backend: Backend = Backend.LOCAL
    #: With the ray backend: the cluster's address (None: a local cluster) and how many workers
    #: (None: one per GPU, else one per CPU).
    ray_address: str | None = None
    ray_workers: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "inputs", tuple(Path(p) for p in self.inputs))
        set_(self, "models", expand_models(self.models))
        for name, kind in (
            ("method", Method), ("objective", ObjectiveKind), ("format", OutputFormat), ("channel", Channel), ("backend", Backend),
            ("strength", Strength),
        ):  # fmt: skip
            set_(self, name, _member(kind, getattr(self, name), name))
        custom = attacks.METHODS[self.method.value].custom is not None
        if self.look is not None and not attacks.METHODS[self.method.value].edit:
            raise ValueError(f"--look needs an edit method (--method {', '.join(sorted(attacks.EDIT_METHODS))}), not {self.method.value}")
        if self.no_refine:
            if self.look is None:
                raise ValueError("--no-refine needs --look (the look to apply as it is)")
            set_(self, "steps", 0)
        if self.look is not None:
            from ppjax.edits.looks import resolve_look

            set_(self, "look_params", resolve_look(self.look))  # an unknown name or a bad file is said now
        if attacks.METHODS[self.method.value].edit and self.channel is not Channel.SOCIAL:
            raise ValueError(f"--method {self.method.value} runs under --channel social only")
        for name, value in method_defaults(self.method.value, self.strength.value).items():
            if getattr(self, name) is None:
                set_(self, name, value)
        delta_e, eps = budget_of(self.method.value, self.strength.value, self.delta_e, self.eps)
        set_(self, "eps", eps)
        allowances = parse_delta_e(delta_e)
        if allowances is None and self.mottle is not None and parse_mottle(self.mottle) is not None:
            raise ValueError("--mottle is part of the perceptual budget: it needs --delta-e (not off)")
        if allowances is None and self.focus:
            raise ValueError("--focus is part of the perceptual budget: it needs --delta-e (not off)")
        if allowances is None:
            set_(self, "mottle", "off")
            set_(self, "focus", 0.0)
        for name, value in STRENGTHS[self.strength.value].items():
            if getattr(self, name) is None and not (custom and name in ("margin", "scales")):
                set_(self, name, value)
        set_(self, "delta_e", "off" if allowances is None else f"{allowances[0]:g},{allowances[1]:g}")
        cap = parse_mottle(self.mottle)
        set_(self, "mottle", "off" if cap is None else f"{100.0 * cap:g}")
        if not 0.0 <= self.focus <= 1.0:
            raise ValueError(f"--focus must be in 0..1 (0: every pixel's step alike), got {self.focus}")
        if allowances is not None and self.method.value not in attacks.PERCEPTUAL_METHODS:
            raise ValueError(f"--delta-e works with --method {', '.join(attacks.PERCEPTUAL_METHODS)}; use --delta-e off with {self.method.value}")
        if self.penalty is not None:
            set_(self, "penalty", _member(Penalty, self.penalty, "penalty"))
        if self.appeal is None:
            set_(self, "appeal", 1.0 if self.method.value in attacks.NEEDS_APPEAL else 0.0)
        if not self.models:
            raise ValueError("--model names no model")
        if self.method.value in attacks.NEEDS_APPEAL and self.appeal <= 0:
            raise ValueError(f"--method {self.method.value} needs --appeal > 0 (it steers by NIMA's gradient)")
        if self.objective is ObjectiveKind.SENSITIVE and not set(self.models) <= set(MODEL_GROUPS["places365-family"]):
            raise ValueError("--objective sensitive needs Places365 models (places365, places365-family or its members: their 60 sensitive scenes)")
        if self.ensemble not in attacks.FUSIONS:
            raise ValueError(f"--ensemble must be one of {', '.join(attacks.FUSIONS)}, not {self.ensemble!r}")
        for name, low in (("eps", 0.0), ("appeal", 0.0), ("penalty_weight", 0.0)):
            if getattr(self, name) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low:g}")
        if self.channel is Channel.SOCIAL and attacks.METHODS[self.method.value].custom is not None:
            raise ValueError(f"--method {self.method.value} cannot attack through a channel: use --channel exact, or another method")
        for name, default in attack_defaults(self.method.value).items():
            if getattr(self, name) is None:
                set_(self, name, default)
            elif custom and name in TRANSFER_OFF and getattr(self, name) != TRANSFER_OFF[name]:
                raise ValueError(f"--method {self.method.value} has a loop of its own: it takes no --{name}")
        if self.margin < 0:
            raise ValueError("--margin must be at least 0")
        if not 0 <= self.min_psnr <= 100:
            raise ValueError("--min-psnr must be in 0..100 dB (0: no floor)")
        try:
            self.transfer
        except ValueError as e:
            raise ValueError(f"{'/'.join('--' + name.replace('_', '-') for name in TRANSFER_OFF)}: {e}") from None
        if self.channel_rounds < 0:
            raise ValueError("--channel-rounds must be at least 0")
        if self.lattice_steps < 0:
            raise ValueError("--lattice-steps must be at least 0")
        if self.panel_margin < 0:
            raise ValueError("--panel-margin must be at least 0 (0: later rounds only for a photo some variant shows unprotected)")
        if self.batch_size is None:
            set_(self, "batch_size", default_batch_size())
        for name in ("steps", "batch_size", "channel_draws"):
            if getattr(self, name) < 1 and not (name == "steps" and self.no_refine):
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        set_(self, "devices", str(self.devices).strip().lower())
        if self.devices != "all" and not (self.devices.isdigit() and int(self.devices) >= 1):
            raise ValueError(f"--devices must be 'all' or a number of at least 1, not {self.devices!r}")
        if self.ray_workers is not None and self.ray_workers < 1:
            raise ValueError("--ray-workers must be at least 1")
        if self.num_shards is not None and self.num_shards < 1:
            raise ValueError("--num-shards must be at least 1")
        if self.shard_index is not None and (self.shard_index < 0 or (self.num_shards is not None and self.shard_index >= self.num_shards)):
            raise ValueError(f"--shard-index must be in 0..{(self.num_shards or 1) - 1}")
        if not 1 <= self.jpeg_quality <= 100 or self.jpeg_rounds < 0:
            raise ValueError("--jpeg-quality must be in 1..100 and --jpeg-rounds at least 0")


def default_batch_size() -> int:
    """Photos per program call when none is asked for: 1 on a CPU, where a larger batch takes as
    long per photo (EfficientNet-Lite0's input gradient, 2 cores: 30 ms a photo at 1, 28 ms at 8)
    and one photo's bytes then depend on nothing but the photo, the seed and the settings; 8 on a
    GPU or TPU, which a single photo leaves mostly idle."""
    import jax

    return 1 if jax.default_backend() == "cpu" else 8


def expand_models(names) -> tuple[str, ...]:
    """Model names with each named group (:data:`MODEL_GROUPS`) replaced by its members, each once,
    in the order given."""
    out: list[str] = []
    for name in (n.strip() for n in names):
        for member in MODEL_GROUPS.get(name, (name,) if name else ()):
            if member not in out:
                out.append(member)
    return tuple(out)


def _transfer(config: "ProtectConfig") -> attacks.Transfer:
    return transfer_of(vars(config))


ProtectConfig.transfer = property(_transfer, doc="The transfer parts as an :class:`ppjax.attacks.Transfer`.")


def perceptual_of(delta_e: str, mottle: str = "off", focus: float = 0.0) -> attacks.PerceptualBudget | None:
    """The :class:`ppjax.attacks.PerceptualBudget` of a ``--delta-e`` value (None for off), a
    ``--mottle`` one and a ``--focus`` one."""
    allowances = parse_delta_e(delta_e)
    return None if allowances is None else attacks.PerceptualBudget(*allowances, mottle=parse_mottle(mottle), focus=float(focus))


ProtectConfig.perceptual = property(lambda config: perceptual_of(config.delta_e, config.mottle, config.focus), doc="The perceptual budget (None: off).")


def _member(kind: type[enum.Enum], value, name: str):
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"--{name} must be one of {', '.join(m.value for m in kind)}, not {value!r}") from None
