"""The official Places365-Standard scene classifiers and the task's sensitive categories.

The task's model is the ResNet50 (``places365``). Its family from the same CSAIL release, all on
the same 365 classes, are ``places365-resnet18``, ``places365-wideresnet18`` (CSAIL's own
``wideresnet.py``: ResNet18 without the stem's max pool) and ``places365-densenet161``; together
they are the named ensemble ``places365-family``.

Preprocessing follows the MediaEval Pixel Privacy 2019 protocol: pixels in [0, 1], ImageNet
mean/std normalisation, no resize and no crop (the task's images are 256x256; other sizes work since
the networks pool globally). The exception is WideResNet18, whose average pool is fixed for 14x14
maps: like CSAIL's demo, it sees every image resized to 224x224 first.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from ppjax.models import Model, ModelSpec, abstract_shapes, load_classifier, normalised_apply
from ppjax.models.densenet import densenet161
from ppjax.models.resnet import ResNet, resnet18, resnet50

__all__ = ["SPEC", "SPECS", "ARCHS", "SENSITIVE_CATEGORIES", "parse_categories", "build", "expected_shapes", "make_apply", "load"]

SPEC = ModelSpec(
    name="places365",
    description="Places365-Standard ResNet50 (official CSAIL checkpoint), 365 scene classes",
    num_classes=365,
    native_size=256,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)

_MEAN, _STD = SPEC.mean, SPEC.std
SPECS = {
    "places365": SPEC,
    "places365-resnet18": ModelSpec("places365-resnet18", "Places365-Standard ResNet18 (official CSAIL checkpoint), 365 scene classes", 365, 256, _MEAN, _STD),
    "places365-wideresnet18": ModelSpec(
        "places365-wideresnet18", "Places365-Standard WideResNet18 (official CSAIL checkpoint), 365 scene classes", 365, 224, _MEAN, _STD, fixed_size=224
    ),
    "places365-densenet161": ModelSpec("places365-densenet161", "Places365-Standard DenseNet161 (official CSAIL checkpoint), 365 scene classes", 365, 256, _MEAN, _STD),
}
#: Model name -> the ``arch`` its official checkpoint names.
ARCHS = {"places365": "resnet50", "places365-resnet18": "resnet18", "places365-wideresnet18": "wideresnet18", "places365-densenet161": "densenet161"}

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


def build(dtype=jnp.float32, name: str = "places365"):
    """The Flax module of ``name`` (a key of :data:`SPECS`); ``dtype`` is the compute dtype
    (parameters stay float32)."""
    n = SPECS[name].num_classes
    arch = ARCHS[name]
    if arch == "resnet50":
        return resnet50(n, dtype=dtype)
    if arch == "densenet161":
        return densenet161(n, dtype=dtype)
    return resnet18(n, dtype=dtype, maxpool=arch == "resnet18")


def expected_shapes(name: str = "places365") -> dict[str, tuple[int, ...]]:
    """Flat variable key -> shape, computed abstractly (no weights allocated)."""
    return abstract_shapes(build(name=name), SPECS[name].native_size)


def make_apply(module: ResNet, name: str = "places365"):
    """Pure ``apply(variables, x01) -> logits`` with the model's preprocessing inside."""
    return normalised_apply(module, SPECS[name])


def load(model_dir: str | Path, dtype=jnp.float32, name: str = "places365") -> Model:
    """Load the converted model from a store folder (``weights.safetensors`` + ``labels.txt``)."""
    labels = parse_categories((Path(model_dir) / "labels.txt").read_text(encoding="utf-8"))
    return load_classifier(model_dir, SPECS[name], build(dtype, name), labels, SENSITIVE_CATEGORIES.values())


def load_resnet18(model_dir: str | Path, dtype=jnp.float32) -> Model:
    return load(model_dir, dtype, "places365-resnet18")


def load_wideresnet18(model_dir: str | Path, dtype=jnp.float32) -> Model:
    return load(model_dir, dtype, "places365-wideresnet18")


def load_densenet161(model_dir: str | Path, dtype=jnp.float32) -> Model:
    return load(model_dir, dtype, "places365-densenet161")


# The store names each member's spec by "module:attribute".
SPECS_RESNET18 = SPECS["places365-resnet18"]
SPECS_WIDERESNET18 = SPECS["places365-wideresnet18"]
SPECS_DENSENET161 = SPECS["places365-densenet161"]
