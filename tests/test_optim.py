"""fastnn.optim: optimizer classes (state, schedules, clipping, configs) on every backend.

The update formulas themselves are the fused ops' business (tests/test_nn_ops); here the classes
are checked through properties that hold whatever the formulation: the first steps' sizes, state
carried between steps, and convergence on a quadratic.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn import optim

ALL = [lambda: optim.SGD(0.1), lambda: optim.SGD(0.05, momentum=0.9),
       lambda: optim.SGD(0.05, momentum=0.9, nesterov=True), lambda: optim.Adam(0.1),
       lambda: optim.AdamW(0.1, weight_decay=1e-4), lambda: optim.RMSprop(0.05),
       lambda: optim.RMSprop(0.01, momentum=0.5)]


@pytest.mark.parametrize("make", ALL, ids=["sgd", "momentum", "nesterov", "adam", "adamw",
                                           "rmsprop", "rmsprop_momentum"])
def test_minimizes_a_quadratic(backend, make, rng):
    opt = make()
    target = rng.standard_normal((4, 3)).astype(np.float32)
    p = np.zeros((4, 3), np.float32)
    b = np.zeros(3, np.float32)
    for _ in range(300):
        opt.step([p, b], [2 * (p - target), 2 * (b - 1.0)])
    np.testing.assert_allclose(p, target, atol=0.05)
    np.testing.assert_allclose(b, 1.0, atol=0.05)
    assert opt.iterations == 300


def test_sgd_step_is_lr_times_gradient(backend, rng):
    p = rng.standard_normal(5)
    g = rng.standard_normal(5)
    want = p - 0.1 * g
    optim.SGD(learning_rate=0.1).step([p], [g])
    np.testing.assert_allclose(p, want, rtol=1e-12)


def test_adam_first_step_is_lr_sized(backend, rng):
    p = np.zeros(6)
    g = rng.standard_normal(6)
    optim.Adam(0.01).step([p], [g])
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-4)


def test_state_is_kept_per_parameter(backend, rng):
    g = rng.standard_normal(4)
    p1, p2 = np.zeros(4), np.zeros(4)
    opt = optim.SGD(0.1, momentum=0.9)
    opt.step([p1], [g])
    opt.step([p1], [g])  # heavy ball: the second step is 1.9 times the first
    fresh = optim.SGD(0.1, momentum=0.9)
    fresh.step([p2], [g])
    np.testing.assert_allclose(p1, 2.9 * p2, rtol=1e-12)
    opt.reset()
    assert opt.iterations == 0
    p3 = np.zeros(4)
    opt.step([p3], [g])
    np.testing.assert_array_equal(p3, p2)


def test_adamw_decays_weights_apart_from_gradient(backend):
    p = np.full(3, 2.0)
    optim.AdamW(0.1, weight_decay=0.5).step([p], [np.zeros(3)])
    np.testing.assert_allclose(p, 2.0 * (1 - 0.1 * 0.5), rtol=1e-12)
    q = np.full(3, 2.0)
    optim.Adam(0.1).step([q], [np.zeros(3)])
    np.testing.assert_array_equal(q, 2.0)


def test_clipnorm_scales_all_gradients_together(backend, rng):
    g1, g2 = rng.standard_normal(3) * 10, rng.standard_normal(2) * 10
    norm = math.sqrt(np.sum(g1 ** 2) + np.sum(g2 ** 2))
    p1, p2 = np.zeros(3), np.zeros(2)
    want1, want2 = -g1 / norm, -g2 / norm
    optim.SGD(1.0, clipnorm=1.0).step([p1, p2], [g1, g2])
    np.testing.assert_allclose(p1, want1, rtol=1e-10)
    np.testing.assert_allclose(p2, want2, rtol=1e-10)
    small = np.array([0.1, 0.2])
    p = np.zeros(2)
    optim.SGD(1.0, clipnorm=1.0).step([p], [small.copy()])  # under the limit: untouched
    np.testing.assert_allclose(p, -small)


@pytest.mark.parametrize("schedule,values", [
    (optim.StepDecay(1.0, step_size=2, factor=0.5), [1.0, 1.0, 0.5, 0.5, 0.25]),
    (optim.ExponentialDecay(1.0, decay_steps=2, decay_rate=0.25), [1.0, 0.5, 0.25, 0.125]),
    (optim.ExponentialDecay(1.0, 2, 0.25, staircase=True), [1.0, 1.0, 0.25, 0.25]),
    (optim.CosineDecay(1.0, decay_steps=4, alpha=0.2), [1.0, 0.2 + 0.8 * (1 + math.cos(
        math.pi / 4)) / 2, 0.6, 0.2 + 0.8 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.2, 0.2]),
])
def test_schedules(schedule, values):
    np.testing.assert_allclose([schedule(i) for i in range(len(values))], values, rtol=1e-12)


def test_schedule_drives_the_optimizer(backend):
    opt = optim.SGD(learning_rate=optim.StepDecay(0.1, step_size=1, factor=0.5))
    p = np.zeros(1)
    steps = []
    for _ in range(3):
        before = p.copy()
        opt.step([p], [np.ones(1)])
        steps.append(float(before[0] - p[0]))
    np.testing.assert_allclose(steps, [0.1, 0.05, 0.025], rtol=1e-12)
    assert opt.current_learning_rate() == pytest.approx(0.0125)


def test_lr_alias_config_and_errors():
    assert optim.Adam(lr=0.02).learning_rate == 0.02
    assert optim.SGD().learning_rate == 0.01 and optim.RMSprop().learning_rate == 0.001
    assert optim.AdamW().weight_decay == 0.004
    with pytest.raises(TypeError, match="alias"):
        optim.SGD(0.1, lr=0.2)
    with pytest.raises(ValueError, match="learning_rate"):
        optim.SGD(-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.get("adamax-ish")
    for opt in (optim.SGD(0.1, momentum=0.5, nesterov=True, clipnorm=2.0),
                optim.AdamW(learning_rate=optim.CosineDecay(0.1, 100), weight_decay=0.01),
                optim.RMSprop(0.01, rho=0.8)):
        again = optim.get(optim.serialize(opt))
        assert type(again) is type(opt) and again.get_config() == opt.get_config()
    assert isinstance(optim.get("adam"), optim.Adam)


def test_mismatched_lists_raise(rng):
    opt = optim.SGD(0.1)
    with pytest.raises(ValueError, match="2 parameters but 1"):
        opt.step([np.zeros(2), np.zeros(3)], [np.zeros(2)])
    with pytest.raises(ValueError, match="shape"):
        opt.step([np.zeros(2)], [np.zeros(3)])


# -- moving averages of the weights (use_ema, Keras's option) ------------------------------------

@pytest.mark.parametrize("make", [lambda **k: optim.SGD(0.1, momentum=0.9, **k),
                                  lambda **k: optim.Adam(0.05, **k),
                                  lambda **k: optim.RMSprop(0.01, **k)],
                         ids=["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ema_follows_its_recurrence(make, dtype, rng):
    # The same optimizer without EMA gives the parameter trajectory; the average is then
    # computed from it in float64: first step the parameter itself, then m * avg + (1 - m) * p.
    m = 0.8
    grads = [rng.standard_normal((3, 5)).astype(dtype) for _ in range(6)]
    start = rng.standard_normal((3, 5)).astype(dtype)
    plain, averaged = start.copy(), start.copy()
    opt_plain, opt_ema = make(), make(use_ema=True, ema_momentum=m)
    want = None
    for g in grads:
        opt_plain.step([plain], [g.copy()])
        opt_ema.step([averaged], [g.copy()])
        want = plain.astype(np.float64) if want is None else m * want + (1 - m) * plain
    np.testing.assert_array_equal(averaged, plain)  # the parameters themselves are untouched
    got = opt_ema.get_state([averaged])["slots"][0][-1]
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-13)
    assert not np.allclose(got, plain)


def test_ema_overwrite_frequency_copies_the_averages_in(rng):
    p = np.zeros(4, np.float32)
    opt = optim.SGD(1.0, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2)
    g = -np.ones(4, np.float32)
    opt.step([p], [g])          # p = 1, avg = 1
    np.testing.assert_array_equal(p, 1.0)
    opt.step([p], [g])          # p = 2, avg = 1.5, then p := avg
    np.testing.assert_array_equal(p, 1.5)
    opt.step([p], [g])          # p = 2.5, avg = 2, no copy
    np.testing.assert_array_equal(p, 2.5)
    opt.finalize_variable_values([p])  # with a frequency, fit's end leaves the weights alone
    np.testing.assert_array_equal(p, 2.5)


def test_fit_ends_with_the_averaged_weights():
    from fastnn import nn
    import fastnn
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    fastnn.random.seed(0)
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(5,)),
                           nn.Dense(2, activation="softmax")])
    model.compile(optim.Adam(0.01, use_ema=True), "sparse_categorical_crossentropy")
    seen = {}

    def last_epoch(epoch, logs):
        seen["raw"] = [w.copy() for w in model.get_weights()]
        seen["avg"] = [s[-1].copy() for s in model.optimizer.get_state(model.params)["slots"]]

    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[nn.LambdaCallback(on_epoch_end=last_epoch)])
    for w, avg, raw in zip(model.get_weights(), seen["avg"], seen["raw"]):
        np.testing.assert_array_equal(w, avg)
        assert not np.array_equal(w, raw)


def test_ema_settings_are_checked_and_saved():
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema_momentum"):
            optim.Adam(use_ema=True, ema_momentum=bad)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="ema_overwrite_frequency"):
            optim.SGD(use_ema=True, ema_overwrite_frequency=bad)
    opt = optim.AdamW(1e-3, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=3)
    again = optim.get(optim.serialize(opt))
    assert (again.use_ema, again.ema_momentum, again.ema_overwrite_frequency) == (True, 0.9, 3)
    assert "use_ema" not in optim.Adam().get_config()  # configs without EMA stay as they were
    # a state saved without the averages does not fit an optimizer that keeps them
    p = np.zeros(3)
    plain = optim.Adam(0.1)
    plain.step([p], [np.ones(3)])
    with pytest.raises(ValueError, match="slots"):
        optim.Adam(0.1, use_ema=True).set_state([p], plain.get_state([p]))
