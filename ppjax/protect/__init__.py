"""Protecting photos: the run's settings (:mod:`.config`), the jitted attack-round-verify core
(:mod:`.protector`), files in and out (:mod:`.files`) and one whole run (:mod:`.runner`)."""

from ppjax.protect.config import Method, ObjectiveKind, OutputFormat, Penalty, ProtectConfig
from ppjax.protect.files import ProtectResult, protect_files
from ppjax.protect.protector import Protector, lattice_radius, quantise
from ppjax.protect.runner import ProtectSummary, build_protector, plan_jobs, run

__all__ = [
    "Method", "ObjectiveKind", "OutputFormat", "Penalty", "ProtectConfig",
    "ProtectResult", "protect_files", "Protector", "lattice_radius", "quantise",
    "ProtectSummary", "build_protector", "plan_jobs", "run",
]  # fmt: skip
