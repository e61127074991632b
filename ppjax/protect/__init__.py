"""Protecting photos: the run's settings (:mod:`.config`), the jitted attack-round-verify core
(:mod:`.protector`), files in and out (:mod:`.files`), one whole run (:mod:`.runner`), and running
at scale: every local device (:mod:`.devices`), shards of an array job (:mod:`.shards`), and the
exactly-once manifest of an output folder (:mod:`.manifest`)."""

from ppjax.protect.config import Method, ObjectiveKind, OutputFormat, Penalty, ProtectConfig
from ppjax.protect.devices import replicas, select_devices
from ppjax.protect.files import ProtectResult, protect_files
from ppjax.protect.manifest import Manifest
from ppjax.protect.protector import Protector, lattice_radius, quantise
from ppjax.protect.runner import Plan, ProtectSummary, build_protector, plan, plan_jobs, run, run_settings
from ppjax.protect.shards import resolve_shard, select_shard, shard_of

__all__ = [
    "Method", "ObjectiveKind", "OutputFormat", "Penalty", "ProtectConfig",
    "ProtectResult", "protect_files", "Protector", "lattice_radius", "quantise",
    "Plan", "ProtectSummary", "build_protector", "plan", "plan_jobs", "run", "run_settings",
    "replicas", "select_devices", "Manifest", "resolve_shard", "select_shard", "shard_of",
]  # fmt: skip
