"""ProtectConfig: every choice an Enum, every impossible combination refused with the option named."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ppjax.cli import app
from ppjax.protect import Method, ObjectiveKind, OutputFormat, ProtectConfig


def test_defaults_and_coercion():
    c = ProtectConfig(("a.png",), Path("out"), models=(" places365", ""), method="coupled", format="jpeg")
    assert c.models == ("places365",) and c.method is Method.COUPLED and c.format is OutputFormat.JPEG
    assert c.appeal == 1.0 and c.objective is ObjectiveKind.CE and c.inputs == (Path("a.png"),)
    assert ProtectConfig(("a.png",), Path("out")).appeal == 0.0


def test_attack_defaults_are_the_measured_transfer_setting_except_for_own_loops():
    from ppjax.protect.config import ATTACK_DEFAULTS, DEFAULT_MIN_PSNR

    pgd = ProtectConfig(("a.png",), Path("out"))
    assert (pgd.margin, pgd.diversity, pgd.smoothing, pgd.momentum, pgd.scales, pgd.skip_gradient, pgd.ghost, pgd.spectrum, pgd.flip) == (10.0, 1.0, 5, 1.0, 1, 0.5, 0.0, 0.0, 0.0) == tuple(ATTACK_DEFAULTS.values())
    assert pgd.min_psnr == DEFAULT_MIN_PSNR == 38.0 and pgd.transfer.active
    cw = ProtectConfig(("a.png",), Path("out"), method="cw", channel="exact")
    assert (cw.margin, cw.diversity, cw.smoothing, cw.momentum, cw.scales, cw.skip_gradient, cw.ghost, cw.spectrum, cw.flip) == (2.0, 0.0, 0, 0.0, 1, 1.0, 0.0, 0.0, 0.0) and not cw.transfer.active
    assert ProtectConfig(("a.png",), Path("out"), skip_gradient=0.5).transfer.skip_gradient == 0.5
    assert ProtectConfig(("a.png",), Path("out"), ghost=0.2).transfer.ghost == 0.2
    assert ProtectConfig(("a.png",), Path("out"), spectrum=0.5).transfer.spectrum == 0.5
    assert ProtectConfig(("a.png",), Path("out"), flip=0.5).transfer.flip == 0.5
    from ppjax.protect.config import PANEL_MARGIN

    assert ProtectConfig(("a.png",), Path("out")).panel_margin == PANEL_MARGIN == 0.0
    assert ProtectConfig(("a.png",), Path("out"), method="edit").diversity == 0.7  # the edit methods' own, as measured
    assert not ProtectConfig(("a.png",), Path("out"), method="cw", channel="exact", scales=1).transfer.active  # off, said explicitly
    assert ProtectConfig(("a.png",), Path("out"), scales=3).transfer.scales == 3
    off = ProtectConfig(("a.png",), Path("out"), margin=2.0, diversity=0.0, smoothing=0, momentum=0.0, skip_gradient=1.0, min_psnr=0.0)
    assert (off.margin, off.min_psnr) == (2.0, 0.0) and not off.transfer.active


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "pgdd"}, "--method must be one of fgsm, bim, pgd"),
        ({"method": "coupled", "appeal": 0.0}, "--method coupled needs --appeal > 0"),
        ({"objective": "sensitive", "models": ("efficientnet-lite0",)}, "--objective sensitive needs Places365 models"),
        ({"models": ("", " ")}, "--model names no model"),
        ({"eps": -1.0}, "--eps must be at least 0"),
        ({"steps": 0}, "--steps must be at least 1"),
        ({"jpeg_quality": 0}, "--jpeg-quality must be in 1..100"),
        ({"min_psnr": -1.0}, "--min-psnr must be in 0..100"),
        ({"method": "cw", "channel": "exact", "smoothing": 5}, "--method cw has a loop of its own: it takes no --smoothing"),
        ({"method": "pfgsm", "channel": "exact", "scales": 3}, "--method pfgsm has a loop of its own: it takes no --scales"),
        ({"scales": 0}, "--spectrum/--flip: scales is a whole number"),
        ({"ghost": 0.7}, "--flip: ghost is the half width"),
        ({"method": "cw", "channel": "exact", "ghost": 0.2}, "--method cw has a loop of its own: it takes no --ghost"),
        ({"spectrum": 1.0}, "--flip: spectrum is the half width"),
        ({"flip": 1.5}, "--flip: flip is a probability"),
        ({"panel_margin": -1.0}, "--panel-margin must be at least 0"),
        ({"method": "pfgsm", "channel": "exact", "spectrum": 0.5}, "--method pfgsm has a loop of its own: it takes no --spectrum"),
    ],
)
def test_impossible_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        ProtectConfig(("a.png",), Path("out"), **options)


def test_cli_choices_come_from_the_enums(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    result = CliRunner().invoke(app, ["protect", "-o", str(tmp_path / "o"), "--method", "pgdd", str(tmp_path)])
    text = " ".join(line.strip("│ ") for line in result.output.splitlines())
    assert result.exit_code == 2 and "Invalid value for '--method'" in text and "'pgdd' is not one of" in text
    result = CliRunner().invoke(app, ["protect", "-o", str(tmp_path / "o"), "--objective", "sensitive", "--model", "efficientnet-lite0", str(tmp_path)])
    assert result.exit_code == 2 and "--objective sensitive needs Places365 models" in result.stderr


def test_options_added_later_enter_the_fingerprint_only_when_used(tiny):
    """Manifests written before --ensemble and --scales existed keep their fingerprint."""
    from ppjax.protect import Protector
    from ppjax.protect.runner import run_settings

    protector = Protector([tiny])
    plain = run_settings(ProtectConfig(("a.png",), Path("out")), protector)
    assert "scales" not in plain and "ensemble" not in plain
    used = run_settings(ProtectConfig(("a.png",), Path("out"), scales=3, ensemble="probs"), protector)
    assert (used["scales"], used["ensemble"]) == (3, "probs")
    assert {k: v for k, v in used.items() if k not in ("scales", "ensemble")} == plain
    # The lattice steps every run had before the option (10) leave no trace; mid's 4 do.
    assert run_settings(ProtectConfig(("a.png",), Path("out")), protector)["lattice_steps"] == 4
    assert "lattice_steps" not in run_settings(ProtectConfig(("a.png",), Path("out"), lattice_steps=10), protector)


def test_the_lattice_steps_reach_the_protector():
    """--lattice-steps, or the strength's, is what the protector built for the run takes."""
    import jax.numpy as jnp

    from ppjax.models import Model, ModelSpec
    from ppjax.protect.runner import build_protector

    def load(name):
        return Model(ModelSpec(name, "", 365, 32, (0.0,) * 3, (1.0,) * 3), lambda v, x: jnp.zeros((x.shape[0], 365)), (), tuple(map(str, range(365))))

    assert build_protector(ProtectConfig(("a.png",), Path("out"), channel="exact"), load).lattice_steps == 4
    assert build_protector(ProtectConfig(("a.png",), Path("out"), channel="exact", strength="high"), load).lattice_steps == 10
    assert build_protector(ProtectConfig(("a.png",), Path("out"), channel="exact", lattice_steps=0), load).lattice_steps == 0


def test_strength_presets_are_their_documented_options():
    """The README's presets table, option by option; an option given explicitly wins."""
    from ppjax.protect.config import STRENGTHS

    documented = {
        "low": {"eps": 3.0, "steps": 10, "lattice_steps": 10, "margin": 5.0, "min_psnr": 40.0, "channel_rounds": 1, "scales": 1, "delta_e": "0.8,2", "mottle": "1.5", "focus": 0.0},
        "mid": {"eps": 4.0, "steps": 12, "lattice_steps": 4, "margin": 10.0, "min_psnr": 38.0, "channel_rounds": 3, "scales": 1, "delta_e": "1.2,3", "mottle": "2", "focus": 0.5},
        "high": {"eps": 6.0, "steps": 30, "lattice_steps": 10, "margin": 15.0, "min_psnr": 35.0, "channel_rounds": 3, "scales": 1, "delta_e": "1.8,4.5", "mottle": "3", "focus": 0.5},
    }  # fmt: skip
    assert STRENGTHS == documented
    perceptual_eps = {"low": 6.0, "mid": 8.0, "high": 12.0}  # the ball around the perceptual budget
    for name, options in documented.items():
        config = ProtectConfig(("a.png",), Path("out"), strength=name)
        assert {k: getattr(config, k) for k in options} == {**options, "eps": perceptual_eps[name]}, name
        alone = ProtectConfig(("a.png",), Path("out"), strength=name, delta_e="off")
        assert {k: getattr(alone, k) for k in options} == {**options, "delta_e": "off", "mottle": "off", "focus": 0.0}, name
        assert (config.diversity, config.smoothing, config.momentum) == (1.0, 5, 1.0)  # the transfer parts stay
    assert ProtectConfig(("a.png",), Path("out")) == ProtectConfig(("a.png",), Path("out"), strength="mid")
    edit = ProtectConfig(("a.png",), Path("out"), method="edit+pgd")
    assert (edit.eps, edit.lattice_steps) == (2.0, 10)  # half the ball alone's; the lattice steps its figures were measured with
    assert ProtectConfig(("a.png",), Path("out"), lattice_steps=0).lattice_steps == 0
    with pytest.raises(ValueError, match="lattice-steps"):
        ProtectConfig(("a.png",), Path("out"), lattice_steps=-1)
    mixed = ProtectConfig(("a.png",), Path("out"), strength="high", eps=5.0, min_psnr=38.0)
    assert (mixed.eps, mixed.min_psnr, mixed.steps, mixed.margin) == (5.0, 38.0, 30, 15.0)
    own_loop = ProtectConfig(("a.png",), Path("out"), strength="high", method="pfgsm", channel="exact")
    assert (own_loop.eps, own_loop.margin) == (6.0, 2.0)  # its own margin
    with pytest.raises(ValueError, match="--strength must be one of low, mid, high"):
        ProtectConfig(("a.png",), Path("out"), strength="max")


def test_the_mottle_cap_is_part_of_the_perceptual_budget():
    config = ProtectConfig(("a.png",), Path("out"), mottle="2.5%")
    assert config.mottle == "2.5" and config.perceptual.mottle == pytest.approx(0.025)
    assert ProtectConfig(("a.png",), Path("out"), mottle="off").perceptual.mottle is None
    assert ProtectConfig(("a.png",), Path("out"), delta_e="off").perceptual is None
    with pytest.raises(ValueError, match="needs --delta-e"):
        ProtectConfig(("a.png",), Path("out"), delta_e="off", mottle="2")
    for bad in ("0.0001%x", "-1", "100", "two"):
        with pytest.raises(ValueError, match="--mottle must be"):
            ProtectConfig(("a.png",), Path("out"), mottle=bad)


def test_format_auto_gives_each_input_its_own_kind(tmp_path):
    from ppjax.protect.runner import plan_jobs

    for name in ("a.jpg", "b.JPEG", "c.HEIC", "d.png", "e.webp", "f.tif"):
        (tmp_path / name).write_bytes(b"")
    config = ProtectConfig((tmp_path,), tmp_path / "out")
    assert config.format is OutputFormat.AUTO
    outputs = sorted(out.name for _, out in plan_jobs(config))
    assert outputs == ["a.jpg", "b.jpg", "c.jpg", "d.png", "e.png", "f.png"]
    png = ProtectConfig((tmp_path,), tmp_path / "out", format="png")
    assert {out.suffix for _, out in plan_jobs(png)} == {".png"}
