"""Every attack method's properties on generated classifiers and real photo crops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.ops import concealment
from ppjax.protect import Protector

from ..attack_models import LinearNet, protect_uint8


METHOD_OPTIONS = [
    ("fgsm", {}), ("bim", {}), ("pgd", {}), ("pgd", {"norm": "l2"}), ("mifgsm", {}),
    ("cw", {}), ("pfgsm", {}), ("masked", {}), ("coupled", {}),
]  # fmt: skip

IDS = ["fgsm", "bim", "pgd-linf", "pgd-l2", "mifgsm", "cw", "pfgsm", "masked", "coupled"]

def _terms(method, generated_nima):
    return (attacks.appeal(*generated_nima, 1.0),) if method in attacks.NEEDS_APPEAL else ()

@pytest.mark.slow
@pytest.mark.parametrize("method, options", METHOD_OPTIONS, ids=IDS)
def test_eps_zero_is_identity(tiny, photos, generated_nima, method, options):
    x0 = jnp.asarray(photos, jnp.float32) / 255
    labels = (jnp.argmax(tiny.apply(tiny.variables, x0), -1),)
    terms = _terms(method, generated_nima)
    adv = attacks.build(method, [tiny], eps=0.0, steps=5, terms=terms, **options)(jax.random.key(0), x0, labels)
    assert np.abs(np.asarray(adv) - np.asarray(x0)).max() <= 1e-7
    q, _, _ = protect_uint8(Protector([tiny], method=method, eps=0.0, steps=5, terms=terms, options=options), jax.random.key(0), photos)
    assert (q == photos).all()

@pytest.mark.slow
@pytest.mark.parametrize("method, options", METHOD_OPTIONS, ids=IDS)
def test_outputs_stay_in_box_and_budget(tiny, photos, generated_nima, method, options):
    eps = 6.0
    x0 = jnp.asarray(photos, jnp.float32) / 255
    labels = (jnp.argmax(tiny.apply(tiny.variables, x0), -1),)
    terms = _terms(method, generated_nima)
    adv = np.asarray(attacks.build(method, [tiny], eps=eps, steps=5, early_stop=False, terms=terms, **options)(jax.random.key(1), x0, labels))
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    delta = adv - np.asarray(x0)
    if options.get("norm") == "l2":
        assert np.sqrt((delta**2).sum(axis=(1, 2, 3))).max() <= eps / 255 + 1e-5
    else:
        assert np.abs(delta).max() <= eps / 255 + 1e-6
    assert np.abs(delta).max() > 0  # it did move
    q, _, _ = protect_uint8(Protector([tiny], method=method, eps=eps, steps=5, terms=terms, options=options), jax.random.key(1), photos)
    assert q.dtype == np.uint8 and np.abs(q.astype(int) - photos).max() <= eps

@pytest.mark.parametrize("method", ["pgd", "pfgsm", "cw"])
def test_same_key_same_bytes_other_key_other_result(tiny, photos, method):
    p = Protector([tiny], method=method, eps=4.0, steps=3, early_stop=False, margin=100.0)
    a, _, _ = protect_uint8(p, jax.random.key(7), photos)
    b, _, _ = protect_uint8(p, jax.random.key(7), photos)
    assert (a == b).all()
    if method != "cw":  # C&W draws nothing at random
        c, _, _ = protect_uint8(p, jax.random.key(8), photos)
        assert (a != c).any()

@pytest.mark.slow
def test_cw_protects_with_less_change_than_pgd(linear, photos):
    x0 = jnp.asarray(photos, jnp.float32) / 255
    labels = (jnp.argmax(linear.apply(linear.variables, x0), -1),)
    results = {}
    for method in ("pgd", "cw"):
        options = {"search_steps": 3} if method == "cw" else {}  # c = 1 is too small for some; the search raises it
        adv = attacks.build(method, [linear], eps=4.0, steps=30, stop_margin=1.0, **options)(jax.random.key(0), x0, labels)
        lead = np.asarray(attacks.objective_and_lead([linear], adv, labels)[1])
        results[method] = (lead, np.sqrt(((np.asarray(adv) - np.asarray(x0)) ** 2).sum(axis=(1, 2, 3))))
    ok = results["pgd"][0] > 1.0
    assert ok.sum() >= 4 and (results["cw"][0][ok] > 1.0).all()  # one photo is out of reach at 4/255 for both
    cw_l2, pgd_l2 = results["cw"][1][ok], results["pgd"][1][ok]
    assert (cw_l2 < pgd_l2).all() and cw_l2.sum() < 0.8 * pgd_l2.sum()

def test_pfgsm_reaches_a_class_outside_the_top5(linear, photos):
    x0 = jnp.asarray(photos, jnp.float32) / 255
    logits = linear.apply(linear.variables, x0)
    labels = (jnp.argmax(logits, -1),)
    adv = attacks.build("pfgsm", [linear], eps=16.0, steps=20, threshold=0.9)(jax.random.key(0), x0, labels)
    p = np.asarray(jax.nn.softmax(linear.apply(linear.variables, adv)))
    top5 = np.asarray(jax.lax.top_k(logits, 5)[1])
    reached = p.max(axis=1) >= 0.9
    assert reached.sum() >= 5
    assert (p.max(axis=1)[reached] < 0.99).all()  # stopped soon after passing the threshold
    assert not any(p[i].argmax() in top5[i] for i in np.flatnonzero(reached))
    other = np.asarray(jax.nn.softmax(linear.apply(linear.variables, attacks.build("pfgsm", [linear], eps=16.0, steps=20, threshold=0.9)(jax.random.key(1), x0, labels))))
    assert (other.argmax(1) != p.argmax(1)).any()  # the target is drawn from the key

def test_pfgsm_never_aims_at_the_sensitive_group(linear, photos):
    x0 = jnp.asarray(photos, jnp.float32) / 255
    logits = linear.apply(linear.variables, x0)
    group = [int(c) for c in np.argsort(np.asarray(logits[0]))[:5]]  # the classes it would otherwise pick from
    target = attacks.Target(linear.apply, linear.variables, attacks.away_from_group(group, 10))
    adv = attacks.build("pfgsm", [target], eps=8.0, steps=20, threshold=0.9, exclude_top=0)(jax.random.key(0), x0[:1], (jnp.argmax(logits[:1], -1),))
    assert int(np.argmax(np.asarray(linear.apply(linear.variables, adv))[0])) not in group

@pytest.mark.slow
def test_masked_leaves_flat_and_salient_areas_untouched(linear):
    rng = np.random.default_rng(0)
    x = np.full((2, 64, 64, 3), 0.5, np.float32)
    x[:, :, 32:] = rng.random((2, 64, 32, 3))  # right half textured, left half flat
    mask = np.asarray(concealment.concealment_map(jnp.asarray(x)))
    assert mask.shape == (2, 64, 64, 1) and mask.min() >= 0 and mask.max() == pytest.approx(1.0)
    assert mask[:, :, :16].max() == 0.0 and mask[:, :, 40:].mean() > 0.1
    module = LinearNet()
    variables = module.init(jax.random.key(3), jnp.zeros((1, 64, 64, 3)))
    target = attacks.Target(module.apply, variables, attacks.cross_entropy())
    labels = (jnp.argmax(module.apply(variables, jnp.asarray(x)), -1),)
    adv = np.asarray(attacks.build("masked", [target], eps=4.0, steps=10, early_stop=False)(jax.random.key(0), jnp.asarray(x), labels))
    assert np.abs(adv - x)[:, :, :16].max() == 0.0 and np.abs(adv - x)[:, :, 40:].max() > 0

@pytest.mark.slow
def test_coupled_keeps_appeal_where_the_summed_objective_loses_protection(linear, photos, generated_nima):
    x0 = jnp.asarray(photos, jnp.float32) / 255
    labels = (jnp.argmax(linear.apply(linear.variables, x0), -1),)
    term = attacks.appeal(*generated_nima, 1.0)
    plain = attacks.build("bim", [linear], eps=4.0, steps=20, stop_margin=1.0)(jax.random.key(0), x0, labels)
    coupled = attacks.build("coupled", [linear], eps=4.0, steps=20, stop_margin=1.0, terms=[term])(jax.random.key(0), x0, labels)
    summed = attacks.build("bim", [linear], eps=4.0, steps=20, stop_margin=1.0, terms=[term])(jax.random.key(0), x0, labels)
    score = lambda x: np.asarray(term.value(term.variables, x, x0))  # noqa: E731
    protected = lambda x: int((np.asarray(attacks.objective_and_lead([linear], x, labels)[1]) > 0).sum())  # noqa: E731
    # The random NIMA's gradient is far larger than the classifier's: added as is, it takes over.
    assert protected(coupled) >= 5 and protected(summed) < protected(coupled)
    assert (score(coupled) > score(plain)).all()
    with pytest.raises(ValueError, match="appeal"):
        attacks.build("coupled", [linear], terms=())


def test_a_misspelt_option_raises_and_names_the_accepted_ones(linear):
    with pytest.raises(TypeError, match=r"'pgd' has no option 'nrom'; it accepts: eps, steps, early_stop, stop_margin, norm, step_size"):
        attacks.build("pgd", [linear], nrom="l2")
    with pytest.raises(TypeError, match=r"'fgsm' has no option 'decay'"):
        attacks.build("fgsm", [linear], decay=0.5)  # MI-FGSM's option, not FGSM's
    with pytest.raises(TypeError, match="'mifgsm' has no option 'sigma'"):
        Protector([linear], method="mifgsm", options={"sigma": 3.0})  # at construction, not at the first batch
    with pytest.raises(ValueError, match="unknown attack method 'pgdd'; known: fgsm, bim, pgd"):
        attacks.build("pgdd", [linear])


@pytest.mark.slow
def test_every_method_row_builds_with_its_own_options(linear, photos):
    """Each row of the table, given each of its options explicitly, runs (no option is dead)."""
    values = {
        "norm": "l2", "step_size": 1.0, "decay": 0.5, "sigma": 3.0, "threshold": 0.9, "exclude_top": 2, "c": 2.0, "search_steps": 2,
        "learning_rate": 0.05, "reg": 0.1, "max_delta_e": 5.0, "pixel_steps": 2,
    }  # fmt: skip
    x0 = jnp.asarray(photos[:2], jnp.float32) / 255
    labels = (jnp.argmax(linear.apply(linear.variables, x0), -1),)
    for name, method in attacks.METHODS.items():
        assert attacks.options_of(name) == (*attacks.COMMON_OPTIONS, *method.options)
        if method.needs_appeal:
            continue
        if method.edit:  # an edit's sliders come back, inside their ranges
            from ppjax.edits import EditPipeline

            pipe = EditPipeline(method.edit)
            params = attacks.build(name, [linear], eps=2.0, steps=2, **{k: values[k] for k in method.options})(jax.random.key(0), x0, labels)
            inside = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), params, pipe.project(params))
            assert jax.tree_util.tree_all(inside) and pipe.apply(params, x0).shape == x0.shape
            continue
        adv = attacks.build(name, [linear], eps=2.0, steps=2, **{k: values[k] for k in method.options})(jax.random.key(0), x0, labels)
        assert adv.shape == x0.shape and float(jnp.abs(adv - x0).max()) <= 2 / 255 * (1 + 1e-5) * (32 * 32 * 3) ** 0.5


@pytest.mark.slow
def test_edit_methods_take_the_appeal_term(linear, photos, generated_nima):
    """`--appeal` with an edit method (tone: every edit method shares the loop): the NIMA term sees
    the edited photo and pulls the sliders towards a higher mean score. Random NIMA weights: this
    checks the plumbing, not appeal."""
    from ppjax.edits import EditPipeline
    from ppjax.models import nima

    apply, variables = generated_nima
    x0 = jnp.asarray(photos[:4], jnp.float32) / 255
    labels = (jnp.argmax(linear.apply(linear.variables, x0), -1),)
    method = "tone"
    pipe = EditPipeline(attacks.METHODS[method].edit)

    def score_gain(weight):
        terms = (attacks.appeal(apply, variables, weight),) if weight else ()
        params = attacks.build(method, [linear], eps=2.0, steps=8, early_stop=False, terms=terms)(jax.random.key(0), x0, labels)
        after = nima.score_moments(apply(variables, pipe.apply(params, x0)))[0]
        return float(jnp.mean(after - nima.score_moments(apply(variables, x0))[0]))

    without, with_appeal = score_gain(0.0), score_gain(200.0)
    assert with_appeal > max(without, 0.0) + 1e-3, (without, with_appeal)
