"""Experiment (docs/benchmarks.md, "A feature-level loss and ghost networks"): a feature-level loss
(FIA, Wang et al. 2021) and ghost networks (Li et al. 2020) on EfficientNet-Lite0, against
ppjax's transfer setting in the plain L-infinity ball (4/255, PGD 20 steps of 0.5/255 from a random
start, input diversity every step, TI 5, momentum 1, SGM 0.5, stop at a lead of 10; no channel, no
perceptual budget). Judges: MobileNetV2 (its 8-bit TFLite file) and Lite1 (ONNX Runtime), as
written (rounded bytes) and after a JPEG q75 re-encode, each against its own class of the original.

    PPJAX_HOME=STORE python docs/experiments/feature_loss_and_ghost.py MODE LAYER LAMBDA [N DROPS PDROP OFFSET GHOST]

MODE: ``base`` (cross-entropy), ``feat`` (FIA's loss alone: -sum(delta * f) at block LAYER of
``_blocks``, delta the label logit's gradient at f averaged over DROPS copies of the photo with a
share PDROP of pixels dropped, unit L2 per photo) or ``mix`` (cross-entropy + LAMBDA * that
loss). GHOST > 0: every residual block's skip path times U[1 - GHOST, 1 + GHOST] at each call
(drawn from a hash of the pixels seen; the library's ``--ghost`` draws from each photo's key).
N photos of the 300 shared ones from OFFSET, in name order. Prints one JSON line."""
import sys, time, json
from pathlib import Path
import numpy as np, jax, jax.numpy as jnp, flax.linen as nn
from PIL import Image
from ppjax.store.install import load_model, model_dir
from ppjax.evaluate.engines import independent_engine
from ppjax.evaluate.pairing import jpeg_roundtrip
from ppjax.attacks.objectives import Target, Objective, _lead_of_others
from ppjax.attacks.loop import iterate
from ppjax.attacks.projections import linf_ball
from ppjax.attacks.steps import sign_step
from ppjax.attacks.transfer import Transfer

ROOT = None  # the store: $PPJAX_HOME
mode, layer, lam = sys.argv[1], sys.argv[2], float(sys.argv[3])
limit = int(sys.argv[4]) if len(sys.argv) > 4 else 60
drops = int(sys.argv[5]) if len(sys.argv) > 5 else 8
pdrop = float(sys.argv[6]) if len(sys.argv) > 6 else 0.3
offset = int(sys.argv[7]) if len(sys.argv) > 7 else 0
ghost = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0
files = sorted((Path(__file__).resolve().parents[3] / "shared/data/imagenet_compatible/images").glob("*"))[offset:offset + limit]
X = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255 for f in files])
m = load_model("efficientnet-lite0", ROOT).with_skip_gradient(0.5)
spec, module = m.spec, m.module.clone(skip_gradient=0.5)

def tapped(variables, x01, delta=None):
    feats = {"f": None}
    ghost_key = [jax.random.key(jnp.sum(jnp.round(x01 * 1e3)).astype(jnp.uint32))] if ghost else None
    def icpt(next_fun, args, kwargs, ctx):
        out = next_fun(*args, **kwargs)
        mod = ctx.module
        if ghost and ctx.method_name == "__call__" and getattr(mod.parent, "name", None) == "_blocks" and args[0].shape == out.shape:
            ghost_key[0], k = jax.random.split(ghost_key[0])
            lam_ = jax.random.uniform(k, (out.shape[0], 1, 1, 1), minval=1 - ghost, maxval=1 + ghost)
            out = out + (lam_ - 1) * args[0]
        if ctx.method_name == "__call__" and mod.name == layer and mod.parent is not None and getattr(mod.parent, "name", None) == "_blocks":
            if delta is not None:
                out = out + delta
            feats["f"] = out
        return out
    with nn.intercept_methods(icpt):
        logits = module.apply(variables, spec.normalise(x01))
    return logits, (feats["f"] if feats["f"] is not None else jnp.zeros((x01.shape[0], 1, 1, 1)))

@jax.jit
def aggregate(variables, x0, labels, key):
    _, f = tapped(variables, x0)
    def one(k):
        keep = jax.random.bernoulli(k, 1 - pdrop, x0.shape[:3] + (1,)).astype(x0.dtype)
        g = jax.grad(lambda d: jnp.sum(jnp.take_along_axis(tapped(variables, x0 * keep, d)[0], labels[:, None], 1)))(jnp.zeros_like(f))
        return g
    g = jnp.sum(jax.lax.map(one, jax.random.split(key, drops)), 0)
    return g / jnp.sqrt(jnp.sum(g * g, axis=(1, 2, 3), keepdims=True) + 1e-20)

def apply(v, x):
    logits, f = tapped(v[0], x)
    s = -jnp.sum(v[1] * f, axis=(1, 2, 3))
    return jnp.concatenate([logits, s[:, None]], 1)

def value(out, y):
    logits, feat = out[:, :-1], out[:, -1]
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1)[:, 0]
    if mode in ("base", "ghost"):
        return ce
    if mode == "feat":
        return feat
    return ce + lam * feat

obj = Objective(value, lambda out, y: _lead_of_others(out[:, :-1], y))
tr = Transfer(diversity=1.0, diversity_scale=0.85, smoothing=5, momentum=1.0, skip_gradient=0.5)
@jax.jit
def attack_batch(mvars, x, y, key):
    delta = aggregate(mvars, x, y, jax.random.fold_in(key, 7)) if mode not in ("base", "ghost") else jnp.zeros_like(tapped(mvars, x)[1])
    v = (mvars, delta)
    return iterate([Target(apply, v, obj)], sign_step(), linf_ball(4.0), steps=20, step_size=0.5,
                   random_start=True, early_stop=True, stop_margin=10.0, transfer=tr)(jax.random.split(key, x.shape[0]), x, (y,))

lite0 = jax.jit(lambda v, x: m.module.clone(skip_gradient=1.0).apply(v, spec.normalise(x)))
t0 = time.time()
advs = []
B = 10
for i in range(0, len(X), B):
    x = jnp.asarray(X[i:i + B])
    y = jnp.argmax(lite0(m.variables, x), -1)
    keys = jax.random.fold_in(jax.random.key(0), i)
    a = attack_batch(m.variables, x, y, keys)
    advs.append(np.clip(np.floor(np.asarray(a) * 255 + 0.5), 0, 255) / 255)
    print(i, round(time.time() - t0, 1), file=sys.stderr, flush=True)
A = np.concatenate(advs).astype(np.float32)
secs = time.time() - t0
psnr = np.mean([10 * np.log10(1 / np.mean((a - x) ** 2)) for a, x in zip(A, X)])
res = {"offset": offset, "ghost": ghost, "mode": mode, "layer": layer, "lam": lam, "drops": drops, "pdrop": pdrop, "n": len(X), "psnr": round(float(psnr), 2), "s": round(secs, 1)}
res["lite0"] = float(np.mean(np.argmax(np.asarray(lite0(m.variables, jnp.asarray(A))), -1) != np.argmax(np.asarray(lite0(m.variables, jnp.asarray(X))), -1)))
for name in ("mobilenet-v2", "efficientnet-lite1"):
    judge = independent_engine(name, model_dir(name, ROOT))
    def top(z):
        return np.argmax(np.concatenate([judge(z[j:j + 10]) for j in range(0, len(z), 10)]), -1)
    res[name] = float(np.mean(top(A) != top(X)))
    Xq = np.stack([jpeg_roundtrip((x * 255).round().astype(np.uint8), 75) for x in X]).astype(np.float32) / 255
    Aq = np.stack([jpeg_roundtrip((a * 255).round().astype(np.uint8), 75) for a in A]).astype(np.float32) / 255
    res[name + "_q75"] = float(np.mean(top(Aq) != top(Xq)))
print(json.dumps(res), flush=True)
