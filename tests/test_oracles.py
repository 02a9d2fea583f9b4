"""Every rule with a counterpart in torch.optim or optax, step by step against it.

The harness (``tests/peers.py``) feeds downhill and the peer the same 200
random gradients from the same start and compares the parameters after
every step: float64 to a relative 1e-10 (bit for bit where the operations
are the same, e.g. SGD and RProp against torch), float32 to 1e-5 absolute.
The hyperparameter mapping written in each case is the one the rule's
docstring states (half-lives to decay rates, where epsilon goes); the
variants add momentum, Nesterov momentum, decoupled weight decay and
gradient clipping where the peer has them, each through the peer's own
means (``torch.optim.SGD(momentum=...)``, ``optax.trace``,
``torch.optim.AdamW``, ``optax.add_decayed_weights``,
``torch.nn.utils.clip_grad_value_``, ``optax.clip``,
``optax.clip_by_global_norm``).

Needs the ``peers`` extra (torch 2.13.0 CPU, optax 0.2.8); without it the
module skips, except in CI, where DOWNHILL_REQUIRE_PEERS=1 makes a missing
peer fail. PyMC's updates are compared in ``tests/test_oracles_pymc.py``.
"""

import numpy as np
import pytest

import downhill
from peers import (STEPS, compare, decay, gradients, initial, needs_peers, run_downhill,
                   run_optax, run_torch)

pytestmark = needs_peers

LR = 0.01
H1, H2 = 5.0, 50.0          # half-lives of the Adam-family averages
B1, B2 = decay(H1), decay(H2)
H = 10.0                    # half-life of RMSProp's and ADADELTA's averages
G = decay(H)
EPS = 1e-3                  # large enough that its placement matters

#: The variants: downhill's keywords; each peer maps them itself or has none.
VARIANTS = {
    "plain": {},
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "decay": dict(weight_decay=0.05),
    "clip": dict(max_gradient_elem=1.5),
    "global-norm": dict(max_gradient_global_norm=4.0, momentum=0.5),
}


# ----------------------------------------------------------------------
# the cases: each rule's mapping to its peers

MU = VARIANTS["momentum"]["momentum"]
WD = VARIANTS["decay"]["weight_decay"]


class Case:
    """One rule and its counterparts.

    Parameters
    ----------
    id : str
        The test id.
    algo : str
        The downhill algorithm.
    hyper : dict
        Its hyperparameters (the plain variant).
    torch : (str, dict), optional
        ``torch.optim`` class name and keywords. torch takes the plain
        variant and ``clip`` (``clip_grad_value_``), and the variants
        named in ``torch_variants``.
    torch_variants : dict, optional
        Variant name -> further torch keywords (``_class`` renames the
        class, e.g. Adam -> AdamW).
    optax_core : callable, optional
        Makes the ``optax.scale_by_*`` transformation of the rule; every
        variant is then compared with optax: the harness puts clipping
        before it, the learning rate after it, then momentum
        (``optax.trace``) and our decoupled decay
        (``optax.add_decayed_weights(-lr * d)``).
    lr : float, optional
        What optax scales by, if not the rule's learning rate (ADADELTA: 1).
    alias : callable, optional
        Makes optax's alias for the plain variant (``optax.adam(...)``),
        compared too.
    exact : set of str
        Peers that agree bit for bit on the plain variant.
    """

    def __init__(self, id, algo, hyper, torch=None, torch_variants=None, optax_core=None,
                 lr=None, alias=None, exact=()):
        self.id, self.algo, self.hyper = id, algo, hyper
        self.torch, self.torch_variants = torch, dict(torch_variants or {})
        self.optax_core, self.alias, self.exact = optax_core, alias, set(exact)
        self.learning_rate = hyper.get(
            "learning_rate", downhill.ALGORITHMS[algo].hyperparameters()["learning_rate"].default)
        self.lr = self.learning_rate if lr is None else lr

    def torch_has(self, variant):
        return self.torch is not None and (
            variant in ("plain", "clip") or variant in self.torch_variants)

    def variants(self):
        """The variants some peer of this rule has."""
        return [v for v in VARIANTS if self.optax_core is not None or self.torch_has(v)
                or (v == "plain" and self.alias is not None)]

    def torch_peer(self, variant):
        """(make, clip) for ``run_torch``."""
        import torch

        name, kwargs = self.torch
        more = dict(self.torch_variants.get(variant, {}))
        cls = getattr(torch.optim, more.pop("_class", name))
        clip = None
        if variant == "clip":
            limit = VARIANTS["clip"]["max_gradient_elem"]
            clip = lambda ps: torch.nn.utils.clip_grad_value_(ps, limit)  # noqa: E731
        return (lambda ps: cls(ps, **kwargs, **more)), clip

    def optax_peer(self, variant):
        """The optax transformation for a variant."""
        import optax

        given = dict(self.hyper, **VARIANTS[variant])
        parts = []
        if given.get("max_gradient_global_norm"):
            parts.append(optax.clip_by_global_norm(given["max_gradient_global_norm"]))
        if given.get("max_gradient_elem"):
            parts.append(optax.clip(given["max_gradient_elem"]))
        parts += [self.optax_core(), optax.scale(-self.lr)]
        if given.get("momentum"):
            parts.append(optax.trace(decay=given["momentum"],
                                     nesterov=given.get("nesterov", False)))
        if given.get("weight_decay"):
            parts.append(optax.add_decayed_weights(-self.learning_rate * given["weight_decay"]))
        return optax.chain(*parts)

    def peers(self, variant):
        """The peers for a variant: name -> what the runner takes."""
        found = {}
        if self.torch_has(variant):
            found["torch"] = self.torch_peer(variant)
        if self.optax_core is not None:
            found["optax"] = self.optax_peer(variant)
        if self.alias is not None and variant == "plain":
            found["optax alias"] = self.alias()
        return found


def _optax():
    import optax
    return optax


SGD_TORCH = {"momentum": dict(momentum=MU), "nesterov": dict(momentum=MU, nesterov=True),
             # torch adds d * p to the gradient: the same as ours without momentum
             "decay": dict(weight_decay=WD)}

CASES = [
    Case("sgd", "sgd", dict(learning_rate=0.05), torch=("SGD", dict(lr=0.05)),
         torch_variants=SGD_TORCH, optax_core=lambda: _optax().identity(),
         alias=lambda: _optax().sgd(0.05), exact={"torch", "optax"}),
    Case("nag", "nag", dict(learning_rate=0.005, momentum=MU, nesterov=True),
         torch=("SGD", dict(lr=0.005, momentum=MU, nesterov=True)),
         optax_core=lambda: _optax().identity(),
         alias=lambda: _optax().sgd(0.005, momentum=MU, nesterov=True)),
    Case("rmsprop-centered", "rmsprop",
         dict(learning_rate=LR, rms_halflife=H, rms_regularizer=EPS),
         optax_core=lambda: _optax().scale_by_stddev(decay=G, eps=EPS),
         alias=lambda: _optax().rmsprop(LR, decay=G, eps=EPS, centered=True)),
    Case("rmsprop-centered-outside", "rmsprop",
         dict(learning_rate=LR, rms_halflife=H, rms_regularizer=EPS, regularizer_in_root=False),
         torch=("RMSprop", dict(lr=LR, alpha=G, eps=EPS, centered=True)),
         torch_variants={"momentum": dict(momentum=MU)},
         optax_core=lambda: _optax().scale_by_stddev(decay=G, eps=EPS, eps_in_sqrt=False),
         alias=lambda: _optax().rmsprop(LR, decay=G, eps=EPS, centered=True,
                                        eps_in_sqrt=False)),
    Case("rmsprop-uncentered", "rmsprop",
         dict(learning_rate=LR, rms_halflife=H, rms_regularizer=EPS, centered=False),
         optax_core=lambda: _optax().scale_by_rms(decay=G, eps=EPS),
         alias=lambda: _optax().rmsprop(LR, decay=G, eps=EPS)),
    Case("rmsprop-uncentered-outside", "rmsprop",
         dict(learning_rate=LR, rms_halflife=H, rms_regularizer=EPS, centered=False,
              regularizer_in_root=False),
         torch=("RMSprop", dict(lr=LR, alpha=G, eps=EPS)),
         torch_variants={"momentum": dict(momentum=MU)},
         optax_core=lambda: _optax().scale_by_rms(decay=G, eps=EPS, eps_in_sqrt=False),
         alias=lambda: _optax().rmsprop(LR, decay=G, eps=EPS, eps_in_sqrt=False)),
    Case("adagrad", "adagrad", dict(learning_rate=0.1, rms_regularizer=EPS),
         optax_core=lambda: _optax().scale_by_rss(initial_accumulator_value=0.0, eps=EPS),
         alias=lambda: _optax().adagrad(0.1, initial_accumulator_value=0.0, eps=EPS)),
    Case("adagrad-outside", "adagrad",
         dict(learning_rate=0.1, rms_regularizer=EPS, regularizer_in_root=False),
         torch=("Adagrad", dict(lr=0.1, eps=EPS))),
    # a smaller epsilon: ADADELTA's first steps are about its root in size
    Case("adadelta", "adadelta", dict(rms_halflife=H, rms_regularizer=1e-4),
         torch=("Adadelta", dict(lr=1.0, rho=G, eps=1e-4)),
         optax_core=lambda: _optax().scale_by_adadelta(rho=G, eps=1e-4), lr=1.0,
         alias=lambda: _optax().adadelta(1.0, rho=G, eps=1e-4)),
    Case("adam", "adam",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS),
         torch=("Adam", dict(lr=LR, betas=(B1, B2), eps=EPS)),
         torch_variants={"decay": dict(_class="AdamW", weight_decay=WD)},
         optax_core=lambda: _optax().scale_by_adam(b1=B1, b2=B2, eps=EPS),
         alias=lambda: _optax().adam(LR, b1=B1, b2=B2, eps=EPS)),
    Case("adam-amsgrad", "adam",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
              amsgrad=True),
         optax_core=lambda: _optax().scale_by_amsgrad(b1=B1, b2=B2, eps=EPS),
         alias=lambda: _optax().amsgrad(LR, b1=B1, b2=B2, eps=EPS)),
    Case("amsgrad", "amsgrad",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS),
         optax_core=lambda: _optax().scale_by_amsgrad(b1=B1, b2=B2, eps=EPS),
         alias=lambda: _optax().amsgrad(LR, b1=B1, b2=B2, eps=EPS)),
    Case("amsgrad-raw", "amsgrad",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
              amsgrad_max="raw"),
         torch=("Adam", dict(lr=LR, betas=(B1, B2), eps=EPS, amsgrad=True)),
         torch_variants={"decay": dict(_class="AdamW", weight_decay=WD)}),
    Case("adamax", "adamax",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS),
         torch=("Adamax", dict(lr=LR, betas=(B1, B2), eps=EPS)),
         optax_core=lambda: _optax().scale_by_adamax(b1=B1, b2=B2, eps=EPS),
         alias=lambda: _optax().adamax(LR, b1=B1, b2=B2, eps=EPS)),
    Case("nadam", "nadam",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
              mu_decay=0.004),
         torch=("NAdam", dict(lr=LR, betas=(B1, B2), eps=EPS, momentum_decay=0.004)),
         torch_variants={"decay": dict(weight_decay=WD, decoupled_weight_decay=True)}),
    Case("nadam-constant", "nadam",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
              mu_schedule=False),
         optax_core=lambda: _optax().scale_by_adam(b1=B1, b2=B2, eps=EPS, nesterov=True),
         alias=lambda: _optax().nadam(LR, b1=B1, b2=B2, eps=EPS)),
    Case("radam", "radam",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS),
         optax_core=lambda: _optax().scale_by_radam(b1=B1, b2=B2, eps=EPS),
         alias=lambda: _optax().radam(LR, b1=B1, b2=B2, eps=EPS)),
    # torch adds eps to the uncorrected root: the same rule only without it
    Case("radam-eps0", "radam",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=0.0),
         torch=("RAdam", dict(lr=LR, betas=(B1, B2), eps=0.0)),
         torch_variants={"decay": dict(weight_decay=WD, decoupled_weight_decay=True)}),
    Case("adabelief", "adabelief",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
              variance_regularizer=1e-4),
         optax_core=lambda: _optax().scale_by_belief(b1=B1, b2=B2, eps=EPS, eps_root=1e-4),
         alias=lambda: _optax().adabelief(LR, b1=B1, b2=B2, eps=EPS, eps_root=1e-4)),
    # optax starts m at initial_accumulator_value too: equal to ours at 0
    Case("yogi", "yogi",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
              initial_accumulator=0.0),
         optax_core=lambda: _optax().scale_by_yogi(b1=B1, b2=B2, eps=EPS,
                                                   initial_accumulator_value=0.0)),
    # Lion: the sign of an interpolation; optax's alias has its own decay
    Case("lion", "lion", dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2),
         optax_core=lambda: _optax().scale_by_lion(b1=B1, b2=B2),
         alias=lambda: _optax().lion(LR, b1=B1, b2=B2, weight_decay=0.0)),
    Case("lion-decay", "lion",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, weight_decay=0.3),
         optax_core=lambda: _optax().scale_by_lion(b1=B1, b2=B2),
         alias=lambda: _optax().lion(LR, b1=B1, b2=B2, weight_decay=0.3)),
    # LARS: our momentum default is optax's 0.9; the plain case sets it to 0
    Case("lars", "lars",
         dict(learning_rate=0.5, momentum=0.0, trust_coefficient=0.02, trust_weight_decay=0.1,
              trust_regularizer=EPS, trust_norm="norm_of_sum"),
         optax_core=lambda: _optax().chain(
             _optax().add_decayed_weights(0.1),
             _optax().scale_by_trust_ratio(trust_coefficient=0.02, eps=EPS)),
         alias=lambda: _optax().lars(0.5, weight_decay=0.1, trust_coefficient=0.02, eps=EPS,
                                     momentum=0.0)),
    Case("lars-defaults", "lars", dict(learning_rate=0.5, trust_norm="norm_of_sum"),
         optax_core=None, alias=lambda: _optax().lars(0.5)),
    Case("lamb", "lamb",
         dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
              trust_weight_decay=0.1),
         optax_core=lambda: _optax().chain(
             _optax().scale_by_adam(b1=B1, b2=B2, eps=EPS),
             _optax().add_decayed_weights(0.1), _optax().scale_by_trust_ratio()),
         alias=lambda: _optax().lamb(LR, b1=B1, b2=B2, eps=EPS, weight_decay=0.1)),
    # Adafactor: torch's epsilon is a floor; optax's relative step is a schedule
    Case("adafactor-floor", "adafactor",
         dict(learning_rate=0.1, rms_regularizer=1e-3, regularizer_as_floor=True),
         torch=("Adafactor", dict(lr=0.1, beta2_decay=-0.8, eps=(1e-3, 1e-3), d=1.0)),
         torch_variants={"decay": dict(weight_decay=WD)}),
    Case("adafactor", "adafactor",
         dict(learning_rate=LR, relative_step=False, decay_exponent=0.7, clip_threshold=0.8,
              rms_regularizer=EPS),
         optax_core=lambda: _adafactor_core(0.7, 0.8, EPS)),
    Case("rprop", "rprop",
         dict(learning_rate=LR, rprop_increase=1.2, rprop_decrease=0.5, rprop_min_step=1e-3,
              rprop_max_step=0.05),
         torch=("Rprop", dict(lr=LR, etas=(0.5, 1.2), step_sizes=(1e-3, 0.05))),
         exact={"torch"}),
]
PAIRS = [(case, variant) for case in CASES for variant in case.variants()]


def _adafactor_core(exponent, threshold, eps, min_size=1):
    """optax's Adafactor without its learning rate, with a float64 decay schedule.

    optax computes the decay rate 1 - t^-c in float32 whatever the parameters'
    dtype; the same formula in the default float dtype (float64 under
    ``enable_x64``) makes the two equal to rounding.
    """
    import jax.numpy as jnp
    import optax
    from optax._src.factorized import scale_by_factored_rms

    def decay_rate(step, exponent):
        t = (step + 1) * jnp.ones([], jnp.result_type(float))
        return 1.0 - t ** (-exponent)

    return optax.chain(
        scale_by_factored_rms(decay_rate=exponent, min_dim_size_to_factor=min_size,
                              epsilon=eps, decay_rate_fn=decay_rate),
        optax.clip_by_block_rms(threshold), optax.scale_by_param_block_rms(1e-3))


def _run_peer(name, made, grads, init):
    if name == "torch":
        make, clip = made
        return run_torch(make, grads, init, clip=clip)
    return run_optax(made, grads, init)


@pytest.mark.parametrize("case,variant", PAIRS, ids=[f"{c.id}-{v}" for c, v in PAIRS])
def test_float64_step_by_step(case, variant):
    peers = case.peers(variant)
    grads, init = gradients("float64"), initial("float64")
    ours, _ = run_downhill(case.algo, dict(case.hyper, **VARIANTS[variant]), grads, init)
    # the run moved the parameters well away from the start: the test is not void
    assert min(np.abs(ours[-1][i] - init[i]).max() for i in range(2)) > 0.05
    for peer, made in peers.items():
        theirs = _run_peer(peer, made, grads, init)
        assert len(theirs) == STEPS
        if variant == "plain" and peer.split()[0] in case.exact:
            compare(ours, theirs, exact=True)
        else:
            compare(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_float32_step_by_step(case):
    grads, init = gradients("float32"), initial("float32")
    ours, _ = run_downhill(case.algo, case.hyper, grads, init)
    assert ours[-1][0].dtype == np.float32
    for peer, made in case.peers("plain").items():
        compare(ours, _run_peer(peer, made, grads, init), atol=1e-5)


def test_every_variant_is_compared_with_both_peers():
    # each variant meets torch and optax somewhere: none is a dead entry
    for variant in VARIANTS:
        with_torch = [c.id for c in CASES if c.torch_has(variant)]
        with_optax = [c.id for c in CASES if variant in c.variants() and c.optax_core]
        assert with_optax, variant
        assert with_torch or variant == "global-norm", variant


def test_the_epsilon_placement_is_what_the_peers_are_told():
    # the switch matters: ADAGRAD with epsilon inside the root is not torch's
    grads, init = gradients("float64", steps=20), initial("float64")
    inside, _ = run_downhill("adagrad", dict(learning_rate=0.1, rms_regularizer=EPS), grads,
                             init)
    make, _ = Case("", "adagrad", {}, torch=("Adagrad", dict(lr=0.1, eps=EPS))).torch_peer("plain")
    with pytest.raises(AssertionError, match="relative difference"):
        compare(inside, run_torch(make, grads, init), rtol=1e-10, atol=1e-12)


def test_optax_rprop_returns_the_previous_steps_update():
    # optax 0.2.8's rprop is off by one step (google-deepmind/optax PR 1725):
    # its first step does not move and each later one applies the update
    # computed the step before. RProp is compared with torch above instead.
    import optax

    grads, init = gradients("float64", steps=5), initial("float64")
    theirs = run_optax(optax.rprop(LR, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-3,
                                   max_step_size=0.05), grads, init)
    np.testing.assert_array_equal(theirs[0][0], init[0])
    ours, _ = run_downhill("rprop", dict(learning_rate=LR, rprop_increase=1.2,
                                         rprop_decrease=0.5, rprop_min_step=1e-3,
                                         rprop_max_step=0.05), grads, init)
    assert not np.array_equal(ours[0][0], init[0])
    # its second step applies our first, except where the gradient's sign
    # flipped at step 2 (there it applies nothing)
    flipped = grads[0][0] * grads[1][0] < 0
    assert flipped.any() and not flipped.all()
    np.testing.assert_array_equal(theirs[1][0] - theirs[0][0],
                                  np.where(flipped, 0.0, ours[0][0] - init[0]))


def test_the_peers_are_the_pinned_versions():
    # the mappings and optax's rprop defect above are those of these versions
    import optax
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
    assert optax.__version__ == "0.2.8", optax.__version__


def test_optax_adafactor_alias_and_its_momentum():
    # optax.adafactor computes its decay rate 1 - t^-c in float32 whatever the
    # parameters' dtype, and keeps its momentum in float32 (dtype_momentum):
    # float32 runs agree to 1e-5, float64 ones to about 1e-6 (the cases above
    # give optax a float64 schedule and agree to 1e-10)
    import optax

    grads, init = gradients("float32"), initial("float32")
    for k in (1, 128):   # its default 128 factors neither of our two parameters
        ours, _ = run_downhill("adafactor", dict(learning_rate=LR, relative_step=False,
                                                 factor_min_size=k), grads, init)
        compare(ours, run_optax(optax.adafactor(LR, min_dim_size_to_factor=k), grads, init),
                atol=1e-5)
    # momentum=b averages the steps: ours with learning_rate lr * (1 - b); its
    # weight_decay_rate is not scaled by the learning rate
    b, rate = 0.8, 1e-3
    ours, _ = run_downhill("adafactor", dict(
        learning_rate=LR * (1 - b), relative_step=False, factor_min_size=1, momentum=b,
        weight_decay=rate / (LR * (1 - b))), grads, init)
    theirs = run_optax(optax.adafactor(LR, min_dim_size_to_factor=1, momentum=b,
                                       weight_decay_rate=rate), grads, init)
    compare(ours, theirs, atol=1e-5)
    grads, init = gradients("float64"), initial("float64")
    ours, _ = run_downhill("adafactor", dict(learning_rate=LR, relative_step=False,
                                             factor_min_size=1), grads, init)
    theirs = run_optax(optax.adafactor(LR, min_dim_size_to_factor=1), grads, init)
    worst = compare(ours, theirs, rtol=1e-5, atol=1e-8)
    assert worst > 1e-12   # the float32 schedule shows: the test sees optax's own rounding


# ----------------------------------------------------------------------
# Schedule-Free and Lookahead: optax's wrappers, with their own runners (the
# evaluation point, x or the slow weights, is compared too)


def _run_optax_with(tx, grads, init, params_of, point_of):
    """Parameters and the evaluation point after every step of optax's ``tx``."""
    import jax
    import optax

    with jax.enable_x64(init[0].dtype == np.float64):
        params = params_of([np.asarray(x) for x in init])
        state = tx.init(params)

        @jax.jit
        def step(params, state, gs):
            updates, state = tx.update(gs, state, params)
            return optax.apply_updates(params, updates), state

        trajectory, points = [], []
        for gs in grads:
            params, state = step(params, state, gs)
            fast, point = point_of(params, state)
            trajectory.append([np.asarray(p) for p in fast])
            points.append([np.asarray(p) for p in point])
    return trajectory, points


def _points(opt, suffix, grads, init, algo, hyper):
    """Our parameters and evaluation point after every step."""
    import pytensor
    import pytensor.tensor as pt

    params = [pytensor.shared(x.copy(), name=f"p{i}") for i, x in enumerate(init)]
    inputs = [pt.tensor(f"g{i}", dtype=x.dtype, shape=x.shape) for i, x in enumerate(init)]
    opt = downhill.build(algo, None, params=params, grads=inputs, **opt)
    step = pytensor.function(inputs, [], updates=opt.get_updates(**hyper))
    trajectory, points = [], []
    for gs in grads:
        step(*gs)
        trajectory.append([p.get_value() for p in params])
        points.append([p.get_value() for p in opt._evaluation_point()])
    assert opt._evaluation_point()[0].name == "p0" + suffix
    return trajectory, points


SF_VARIANTS = ["plain", "decay", "clip", "global-norm"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", SF_VARIANTS)
@pytest.mark.parametrize("algo", ["schedule_free_sgd", "schedule_free_adamw"])
def test_schedule_free_against_optax(algo, variant, dtype):
    # optax keeps z and recomputes x = (y - (1 - b1) z) / b1; our x is a state.
    # With a constant learning rate the two agree; optax's warmup_steps weigh
    # the average by the next step's rate (see the docstrings)
    import optax
    from optax.contrib import schedule_free, schedule_free_eval_params

    lr, b1, d = 0.05, 0.8, 0.1
    hyper = dict(learning_rate=lr, interpolation=b1, weight_lr_power=1.5)
    parts = []
    if variant == "clip":
        hyper["max_gradient_elem"] = 1.5
        parts.append(optax.clip(1.5))
    if variant == "global-norm":
        hyper["max_gradient_global_norm"] = 4.0
        parts.append(optax.clip_by_global_norm(4.0))
    if algo == "schedule_free_sgd":
        parts += [optax.add_decayed_weights(d)] if variant == "decay" else []
        parts.append(optax.sgd(lr))
    else:
        hyper.update(beta2_halflife=H, rms_regularizer=EPS, corrected_lr=False)
        parts += [optax.scale_by_rms(decay=G, eps=EPS, eps_in_sqrt=False, bias_correction=True)]
        parts += [optax.add_decayed_weights(d)] if variant == "decay" else []
        parts.append(optax.scale_by_learning_rate(lr))
    if variant == "decay":
        hyper["weight_decay"] = d
    tx = schedule_free(optax.chain(*parts), lr, b1=b1, weight_lr_power=1.5)
    grads, init = gradients(dtype), initial(dtype)
    ours, our_x = _points({}, "_x", grads, init, algo, hyper)
    theirs, their_x = _run_optax_with(tx, grads, init, lambda ps: ps,
                                      lambda ps, state: (ps, schedule_free_eval_params(state, ps)))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(atol=1e-5)
    compare(ours, theirs, **tol)
    compare(our_x, their_x, **tol)
    assert min(np.abs(our_x[-1][i] - init[i]).max() for i in range(2)) > 0.05
    if variant == "plain":  # optax's aliases
        alias = (optax.contrib.schedule_free_sgd(lr, b1=b1, weight_lr_power=1.5)
                 if algo == "schedule_free_sgd" else
                 optax.contrib.schedule_free_adamw(lr, b1=b1, b2=G, eps=EPS,
                                                   weight_lr_power=1.5))
        compare(ours, run_optax(alias, grads, init), **tol)


LOOKAHEAD_FAST = {
    "sgd-nesterov": (dict(inner="sgd"), dict(learning_rate=LR, momentum=MU, nesterov=True),
                     lambda: _optax().sgd(LR, momentum=MU, nesterov=True)),
    "adam-decay-clip": (
        dict(inner="adam"),
        dict(learning_rate=LR, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=EPS,
             weight_decay=WD, max_gradient_elem=1.5),
        lambda: _optax().chain(_optax().clip(1.5), _optax().adam(LR, b1=B1, b2=B2, eps=EPS),
                               _optax().add_decayed_weights(-LR * WD))),
    "rmsprop": (dict(inner="rmsprop"),
                dict(learning_rate=LR, rms_halflife=H, rms_regularizer=EPS, centered=False),
                lambda: _optax().rmsprop(LR, decay=G, eps=EPS)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fast", sorted(LOOKAHEAD_FAST))
def test_lookahead_against_optax(fast, dtype):
    import optax

    build, hyper, make = LOOKAHEAD_FAST[fast]
    tx = optax.lookahead(make(), sync_period=3, slow_step_size=0.4)
    grads, init = gradients(dtype), initial(dtype)
    ours, our_slow = _points(build, "_slow", grads, init, "lookahead",
                             dict(hyper, sync_period=3, slow_step_size=0.4))
    theirs, their_slow = _run_optax_with(
        tx, grads, init, optax.LookaheadParams.init_synced,
        lambda ps, state: (ps.fast, ps.slow))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(atol=1e-5)
    compare(ours, theirs, **tol)
    compare(our_slow, their_slow, **tol)
    assert not np.allclose(our_slow[-2][0], ours[-2][0])   # mid-cycle: they differ
