"""Experiment (docs/benchmarks.md, "Intermediate-level perturbation decay"): ILPD (Li, Guo, Zuo and
Chen, NeurIPS 2023) on EfficientNet-Lite0 against ppjax's transfer setting in the plain
L-infinity ball, the setting of feature_loss_and_ghost.py (4/255, PGD 20 steps of 0.5/255 from a
random start, input diversity every step, TI 5, momentum 1, SGM 0.5, stop at a lead of 10 on the
undecayed network; no channel, no perceptual budget). Judges: MobileNetV2 (its 8-bit TFLite file)
and Lite1 (ONNX Runtime), as written (rounded bytes) and after a JPEG q75 re-encode.

ILPD: at block LAYER the adversarial view's features h(x') are replaced by
h(x) + GAMMA * (h(x') - h(x)), h(x) the clean photo's features through the same view (constant),
and the cross-entropy is taken on what the rest of the network makes of that: the loss sees the
change at that layer decayed, so the gradient asks for a larger one there. The early stop looks at
the real (undecayed) logits, so the attack stops where the base one would judge it done.

    PPJAX_HOME=STORE python docs/experiments/ilpd.py MODE LAYER GAMMA [N OFFSET NOSTOP]

MODE: ``base`` (cross-entropy; LAYER and GAMMA unused) or ``ilpd``. N photos of the 300 shared ones
from OFFSET, in name order; NOSTOP 1: no early stop (the whole budget spent). Prints a JSON line.
The input diversity is drawn inside the model's call (a key from the pixels seen), so that the
clean photo goes through the same shrink and shift as the adversarial one."""

import json
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ppjax.attacks.loop import iterate
from ppjax.attacks.objectives import Objective, Target, _lead_of_others
from ppjax.attacks.projections import linf_ball
from ppjax.attacks.steps import sign_step
from ppjax.attacks.transfer import Transfer, diverse_inputs
from ppjax.evaluate.engines import independent_engine
from ppjax.evaluate.pairing import jpeg_roundtrip
from ppjax.store.install import load_model, model_dir

mode, layer, gamma = sys.argv[1], sys.argv[2], float(sys.argv[3])
limit = int(sys.argv[4]) if len(sys.argv) > 4 else 60
offset = int(sys.argv[5]) if len(sys.argv) > 5 else 0
nostop = len(sys.argv) > 6 and sys.argv[6] == "1"
files = sorted((Path(__file__).resolve().parents[3] / "shared/data/imagenet_compatible/images").glob("*"))[offset : offset + limit]
X = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255 for f in files])
m = load_model("efficientnet-lite0", None)
spec, module = m.spec, m.module.clone(skip_gradient=0.5)
C = 1000


def forward(variables, x01, replace=None):
    """Logits, and the features at block ``layer`` (replaced by ``replace(out)`` when given)."""
    feats = {}

    def icpt(next_fun, args, kwargs, ctx):
        out = next_fun(*args, **kwargs)
        mod = ctx.module
        if ctx.method_name == "__call__" and mod.name == layer and getattr(mod.parent, "name", None) == "_blocks":
            feats["f"] = out
            if replace is not None:
                out = replace(out)
        return out

    with nn.intercept_methods(icpt):
        logits = module.apply(variables, spec.normalise(x01))
    return logits, feats.get("f")


def apply(v, x):
    variables, clean = v
    # The same shrink and shift for the photo and its clean original: a key from the pixels seen.
    key = jax.random.key(jnp.sum(jnp.round(x * 1e3)).astype(jnp.uint32))
    keys = jax.random.split(key, x.shape[0])
    xv, cv = diverse_inputs(x, keys, 0, 1.0, 0.85), diverse_inputs(clean, keys, 0, 1.0, 0.85)
    real, _ = forward(variables, xv)
    if mode == "base":
        return jnp.concatenate([real, real], 1)
    _, fc = forward(variables, cv)
    fc = jax.lax.stop_gradient(fc)
    decayed, _ = forward(variables, xv, replace=lambda f: fc + gamma * (f - fc))
    return jnp.concatenate([decayed, real], 1)


def value(out, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(out[:, :C]), y[:, None], 1)[:, 0]


obj = Objective(value, lambda out, y: _lead_of_others(out[:, C:], y))
tr = Transfer(diversity=0.0, smoothing=5, momentum=1.0, skip_gradient=0.5)


@jax.jit
def attack_batch(mvars, x, y, key):
    return iterate(
        [Target(apply, (mvars, x), obj)], sign_step(), linf_ball(4.0), steps=20, step_size=0.5,
        random_start=True, early_stop=not nostop, stop_margin=10.0, transfer=tr,
    )(jax.random.split(key, x.shape[0]), x, (y,))  # fmt: skip


lite0 = jax.jit(lambda v, x: m.module.clone(skip_gradient=1.0).apply(v, spec.normalise(x)))
t0 = time.time()
advs = []
B = 10
for i in range(0, len(X), B):
    x = jnp.asarray(X[i : i + B])
    y = jnp.argmax(lite0(m.variables, x), -1)
    a = attack_batch(m.variables, x, y, jax.random.fold_in(jax.random.key(0), i))
    advs.append(np.clip(np.floor(np.asarray(a) * 255 + 0.5), 0, 255) / 255)
    print(i, round(time.time() - t0, 1), file=sys.stderr, flush=True)
A = np.concatenate(advs).astype(np.float32)
secs = time.time() - t0
psnr = np.mean([10 * np.log10(1 / np.mean((a - x) ** 2)) for a, x in zip(A, X)])
res = {"mode": mode, "layer": layer, "gamma": gamma, "nostop": nostop, "offset": offset, "n": len(X), "psnr": round(float(psnr), 2), "s": round(secs, 1)}
res["lite0"] = float(np.mean(np.argmax(np.asarray(lite0(m.variables, jnp.asarray(A))), -1) != np.argmax(np.asarray(lite0(m.variables, jnp.asarray(X))), -1)))
Xq = np.stack([jpeg_roundtrip((x * 255).round().astype(np.uint8), 75) for x in X]).astype(np.float32) / 255
Aq = np.stack([jpeg_roundtrip((a * 255).round().astype(np.uint8), 75) for a in A]).astype(np.float32) / 255
for name in ("mobilenet-v2", "efficientnet-lite1"):
    judge = independent_engine(name, model_dir(name, None))

    def top(z):
        return np.argmax(np.concatenate([judge(z[j : j + 10]) for j in range(0, len(z), 10)]), -1)

    res[name] = float(np.mean(top(A) != top(X)))
    res[name + "_q75"] = float(np.mean(top(Aq) != top(Xq)))
print(json.dumps(res), flush=True)
