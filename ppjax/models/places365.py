"""The official Places365-Standard ResNet50 scene classifier and the task's sensitive categories.

Preprocessing follows the MediaEval Pixel Privacy 2019 protocol: pixels in [0, 1], ImageNet
mean/std normalisation, no resize and no crop (the task's images are 256x256; other sizes work since
the network pools globally).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from ppjax.models import Model, ModelSpec, abstract_shapes, load_classifier, normalised_apply
from ppjax.models.resnet import ResNet, resnet50

__all__ = ["SPEC", "SENSITIVE_CATEGORIES", "parse_categories", "build", "expected_shapes", "make_apply", "load"]

SPEC = ModelSpec(
    name="places365",
    description="Places365-Standard ResNet50 (official CSAIL checkpoint), 365 scene classes",
    num_classes=365,
    native_size=256,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)

#: The 60 privacy-sensitive Places365 categories of the MediaEval 2018/2019 Pixel Privacy task
#: (MEPP18senscats.txt), as class name -> Places365 index.
SENSITIVE_CATEGORIES: dict[str, int] = {
    "/a/airplane_cabin": 1, "/a/airport_terminal": 2, "/a/amusement_park": 7, "/a/aqueduct": 10,
    "/a/army_base": 18, "/b/bank_vault": 37, "/b/bar": 39, "/b/bathroom": 45, "/b/beach": 48,
    "/b/beach_house": 49, "/b/bedchamber": 51, "/b/bedroom": 52, "/b/beer_garden": 53,
    "/b/beer_hall": 54, "/b/berth": 55, "/b/bullring": 68, "/b/bus_interior": 70,
    "/b/bus_station/indoor": 71, "/c/campsite": 76, "/c/car_interior": 82, "/c/castle": 84,
    "/c/catacomb": 85, "/c/chalet": 87, "/c/childs_room": 89, "/c/church/indoor": 90,
    "/c/church/outdoor": 91, "/c/classroom": 92, "/c/closet": 95, "/c/coast": 97,
    "/d/discotheque": 122, "/d/dorm_room": 124, "/d/drugstore": 128, "/g/gymnasium/indoor": 168,
    "/h/home_office": 176, "/h/hospital": 178, "/h/hospital_room": 179, "/j/jacuzzi/indoor": 195,
    "/k/kindergarden_classroom": 202, "/l/locker_room": 219, "/m/mosque/outdoor": 230,
    "/n/nursing_home": 241, "/p/pharmacy": 262, "/p/playground": 268, "/p/playroom": 269,
    "/p/pub/indoor": 274, "/s/sandbox": 294, "/s/sauna": 295, "/s/schoolhouse": 296,
    "/s/shower": 303, "/s/ski_resort": 304, "/s/ski_slope": 305, "/s/slum": 308,
    "/s/swimming_hole": 324, "/s/swimming_pool/indoor": 325, "/s/swimming_pool/outdoor": 326,
    "/t/temple/asia": 330, "/t/train_interior": 336, "/t/train_station/platform": 337,
    "/t/tree_house": 339, "/w/waiting_room": 352,
}  # fmt: skip


class CategoriesError(ValueError):
    pass


def parse_categories(text: str) -> tuple[str, ...]:
    """Class names from a ``categories_places365.txt`` text (``/a/airfield 0`` per line).

    Tolerates a UTF-8 BOM, CRLF line ends and trailing spaces; requires indices 0..364, each once,
    and the 60 sensitive categories at their task indices.
    """
    names: dict[int, str] = {}
    for lineno, line in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise CategoriesError(f"line {lineno}: expected '<name> <index>', got {line.strip()!r}")
        idx = int(parts[1])
        if idx in names:
            raise CategoriesError(f"line {lineno}: index {idx} appears twice")
        names[idx] = parts[0]
    if sorted(names) != list(range(SPEC.num_classes)):
        raise CategoriesError(f"expected indices 0..{SPEC.num_classes - 1}, got {len(names)} entries")
    wrong = [n for n, i in SENSITIVE_CATEGORIES.items() if names[i] != n]
    if wrong:
        raise CategoriesError(f"not the Places365 class list: sensitive categories at wrong index: {wrong[:5]}")
    return tuple(names[i] for i in range(SPEC.num_classes))


def build(dtype=jnp.float32) -> ResNet:
    """The Flax module; ``dtype`` is the compute dtype (parameters stay float32)."""
    return resnet50(SPEC.num_classes, dtype=dtype)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Flat variable key -> shape, computed abstractly (no weights allocated)."""
    return abstract_shapes(build(), SPEC.native_size)


def make_apply(module: ResNet):
    """Pure ``apply(variables, x01) -> logits`` with the ImageNet normalisation inside."""
    return normalised_apply(module, SPEC)


def load(model_dir: str | Path, dtype=jnp.float32) -> Model:
    """Load the converted model from a store folder (``weights.safetensors`` + ``labels.txt``)."""
    labels = parse_categories((Path(model_dir) / "labels.txt").read_text(encoding="utf-8"))
    return load_classifier(model_dir, SPEC, build(dtype), labels, SENSITIVE_CATEGORIES.values())
