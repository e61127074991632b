"""Named looks: fixed edits in the style of popular app filters, the non-adversarial baseline of
"The Geo-Privacy Bonus of Popular Photo Enhancements" (Choi, Larson et al., ICMR 2017): how much
does a look alone hide? Each is a set of the full pipeline's sliders (tone, curves, grade), every
value inside its slider's range; and :func:`save_look` / :func:`load_look` keep any set of
parameters (a fitted universal look too) as JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np

from ppjax.edits.pipeline import PARTS, EditPipeline

__all__ = ["LOOKS", "look", "save_look", "load_look", "resolve_look"]

_S = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)


def _shifts(**by_centre) -> list:
    return [list(by_centre.get(f"h{int(c)}", (0.0, 0.0))) for c in _S]


#: name -> (what it does, slider values that differ from zero).
LOOKS = {
    "warm": ("golden light: warmer, a touch brighter, softer highlights", {"tone": {"exposure": 0.1, "highlights": -0.2}, "grade": {"temperature": 0.6, "vibrance": 0.1}}),
    "cool": ("blue hour: cooler, a little less saturated", {"grade": {"temperature": -0.6, "tint": 0.1, "saturation": -0.1}}),
    "vivid": ("punchy: more contrast, clarity and vibrance", {"tone": {"contrast": 0.15, "clarity": 0.3}, "grade": {"vibrance": 0.25, "saturation": 0.1}}),
    "fade": ("matte: less contrast and saturation, lifted shadows", {"tone": {"contrast": -0.2, "shadows": 0.4}, "grade": {"saturation": -0.2}}),
    "teal-orange": ("cinema grade: oranges warmer, blues and greens towards teal", {"tone": {"contrast": 0.1}, "grade": {"shifts": _shifts(h60=(3.0, 4.0), h180=(-4.0, -3.0), h240=(-3.0, 2.0))}}),
    "bright": ("airy: brighter, lifted shadows, lower contrast", {"tone": {"exposure": 0.3, "shadows": 0.3, "contrast": -0.1}}),
}


def look(name: str) -> dict:
    """The full pipeline's parameters of the named look."""
    if name not in LOOKS:
        raise ValueError(f"unknown look {name!r}; known: {', '.join(LOOKS)}")
    params = EditPipeline(tuple(PARTS)).identity()
    for part, values in LOOKS[name][1].items():
        for slider, v in values.items():
            params[part][slider] = np.asarray(v, np.float32)
    return jax.tree_util.tree_map(np.asarray, params)


def save_look(path: Path, params: dict, *, about: dict | None = None) -> None:
    """Write ``params`` (unbatched) to ``path`` as JSON, atomically (a temporary file moved into place)."""
    doc = {"ppjax_look": 1, "params": jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), params), **({"about": about} if about else {})}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def load_look(path: Path) -> dict:
    """The parameters :func:`save_look` wrote, checked against the sliders' shapes and ranges
    (missing parts and sliders are the identity)."""
    try:
        doc = json.loads(Path(path).read_text())
        raw = doc["params"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a ppjax look ({e})") from None
    pipe = EditPipeline(tuple(PARTS))
    params = jax.tree_util.tree_map(np.asarray, pipe.identity())
    for part, values in raw.items():
        if part not in PARTS:
            raise ValueError(f"{path}: unknown part {part!r}")
        for slider, v in values.items():
            spec = PARTS[part].SLIDERS.get(slider)
            a = np.asarray(v, np.float32)
            if spec is None or a.shape != spec.shape:
                raise ValueError(f"{path}: {part}.{slider} is not a slider of shape {getattr(spec, 'shape', '?')}")
            if not np.all(np.isfinite(a)) or np.any(np.abs(a) > spec.half_range + 1e-6):
                raise ValueError(f"{path}: {part}.{slider} is outside its range of +-{spec.half_range}")
            params[part][slider] = a
    return params


def resolve_look(name_or_file: str) -> dict:
    """A look's parameters from its name in :data:`LOOKS` or a JSON file :func:`save_look` wrote."""
    if name_or_file in LOOKS:
        return look(name_or_file)
    if Path(name_or_file).is_file():
        return load_look(Path(name_or_file))
    raise ValueError(f"a look is one of {', '.join(LOOKS)} or a look's JSON file; {name_or_file!r} is neither")
