"""numpy references for the optimizers torch 1.13 does not have.

Each optimizer is written from its paper, element-wise on float32 numpy
arrays with np.float32 scalars, one numpy operation per rounding step and in
exactly the order paramd's kernels use (server/optimizer_<name>.c): every
multiply, add, divide and square root rounded separately to float32, no
fused multiply-add.  numpy's float32 arithmetic is correctly rounded, so the
results are bit-identical to the C kernels.  Scalars such as 1 - beta1 are
computed in double precision (Python floats) and rounded to float32 once, as
the kernels' `prepare` does.

Every class has the same interface:
    optimizer = Lion(lr=..., betas=(...), ...)
    state = optimizer.init_state(shape)      # dict: slot name -> float32 array
    optimizer.step(param, grad, state, step) # in place; step counts from 1
"""

import math

import numpy as np

F32 = np.float32


def f32(value):
    """A Python (double) scalar rounded to float32 once."""
    return F32(value)


def sign(x):
    """sign as float32 with sign(0) = 0 (and, like the C kernels, 0 for NaN)."""
    return (x > 0).astype(F32) - (x < 0).astype(F32)


def _check(array):
    assert array.dtype == F32, array.dtype


class Lion:
    """Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
    Algorithm 2 (decoupled weight decay)."""

    name = "Lion"
    state_slots = ("exp_avg",)

    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
        self.hyperparameters = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                                    maximize=maximize)
        beta1, beta2 = betas
        self.maximize = maximize
        self.beta1 = f32(beta1)
        self.one_minus_beta1 = f32(1.0 - beta1)
        self.beta2 = f32(beta2)
        self.one_minus_beta2 = f32(1.0 - beta2)
        self.decay_factor = f32(1.0 - lr * weight_decay)
        self.lr = f32(lr)

    def init_state(self, shape):
        return {"exp_avg": np.zeros(shape, dtype=F32)}

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        m = state["exp_avg"]
        g = -grad if self.maximize else grad
        c = self.beta1 * m
        c = c + self.one_minus_beta1 * g
        param[...] = param * self.decay_factor
        param[...] = param - self.lr * sign(c)
        m[...] = self.beta2 * m + self.one_minus_beta2 * g


class Yogi:
    """Zaheer et al., NeurIPS 2018, "Adaptive Methods for Nonconvex
    Optimization", Algorithm 2 (no bias correction), with torch-style coupled
    L2 weight decay."""

    name = "Yogi"
    state_slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-2, betas=(0.9, 0.999), eps=1e-3, initial_accumulator_value=1e-6,
                 weight_decay=0.0, maximize=False):
        self.hyperparameters = dict(lr=lr, betas=tuple(betas), eps=eps,
                                    initial_accumulator_value=initial_accumulator_value,
                                    weight_decay=weight_decay, maximize=maximize)
        beta1, beta2 = betas
        self.maximize = maximize
        self.weight_decay = f32(weight_decay)
        self.has_weight_decay = weight_decay != 0
        self.beta1 = f32(beta1)
        self.one_minus_beta1 = f32(1.0 - beta1)
        self.one_minus_beta2 = f32(1.0 - beta2)
        self.eps = f32(eps)
        self.lr = f32(lr)
        self.initial = f32(initial_accumulator_value)

    def init_state(self, shape):
        return {"exp_avg": np.zeros(shape, dtype=F32),
                "exp_avg_sq": np.full(shape, self.initial, dtype=F32)}

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        g = -grad if self.maximize else grad
        if self.has_weight_decay:
            g = g + self.weight_decay * param
        m[...] = self.beta1 * m + self.one_minus_beta1 * g
        g2 = g * g
        v[...] = v - self.one_minus_beta2 * sign(v - g2) * g2
        param[...] = param - self.lr * m / (np.sqrt(v) + self.eps)


class AdaBelief:
    """Zhuang et al., NeurIPS 2020, "AdaBelief Optimizer", Algorithm 2 (no
    rectification, no amsgrad), with torch-style coupled L2 weight decay and
    Adam's bias corrections (computed in double precision)."""

    name = "AdaBelief"
    state_slots = ("exp_avg", "exp_avg_var")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=0.0,
                 maximize=False):
        self.hyperparameters = dict(lr=lr, betas=tuple(betas), eps=eps,
                                    weight_decay=weight_decay, maximize=maximize)
        beta1, beta2 = betas
        self.lr = lr
        self.beta1_double, self.beta2_double = float(beta1), float(beta2)
        self.maximize = maximize
        self.weight_decay = f32(weight_decay)
        self.has_weight_decay = weight_decay != 0
        self.beta1 = f32(beta1)
        self.one_minus_beta1 = f32(1.0 - beta1)
        self.beta2 = f32(beta2)
        self.one_minus_beta2 = f32(1.0 - beta2)
        self.eps = f32(eps)

    def init_state(self, shape):
        return {"exp_avg": np.zeros(shape, dtype=F32),
                "exp_avg_var": np.zeros(shape, dtype=F32)}

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        m, s = state["exp_avg"], state["exp_avg_var"]
        bias_correction1 = 1.0 - self.beta1_double ** float(step)
        bias_correction2 = 1.0 - self.beta2_double ** float(step)
        step_size = f32(self.lr / bias_correction1)
        bias_correction2_sqrt = f32(math.sqrt(bias_correction2))
        g = -grad if self.maximize else grad
        if self.has_weight_decay:
            g = g + self.weight_decay * param
        m[...] = self.beta1 * m + self.one_minus_beta1 * g
        belief = g - m
        s[...] = self.beta2 * s + self.one_minus_beta2 * (belief * belief) + self.eps
        param[...] = param - (step_size * m) / (np.sqrt(s) / bias_correction2_sqrt + self.eps)


class DeltaBarDelta:
    """Jacobs 1988, "Increased rates of convergence through learning rate
    adaptation": the delta-bar-delta rule, with a gain per weight clipped to
    [min_gain, max_gain] and torch-style coupled L2 weight decay."""

    name = "DeltaBarDelta"
    state_slots = ("gain", "bar_delta")

    def __init__(self, lr=1e-2, kappa=0.05, phi=0.05, theta=0.7, min_gain=0.01, max_gain=10.0,
                 weight_decay=0.0, maximize=False):
        assert max_gain >= min_gain > 0
        self.hyperparameters = dict(lr=lr, kappa=kappa, phi=phi, theta=theta,
                                    min_gain=min_gain, max_gain=max_gain,
                                    weight_decay=weight_decay, maximize=maximize)
        self.maximize = maximize
        self.weight_decay = f32(weight_decay)
        self.has_weight_decay = weight_decay != 0
        self.kappa = f32(kappa)
        self.one_minus_phi = f32(1.0 - phi)
        self.theta = f32(theta)
        self.one_minus_theta = f32(1.0 - theta)
        self.min_gain = f32(min_gain)
        self.max_gain = f32(max_gain)
        self.lr = f32(lr)

    def init_state(self, shape):
        return {"gain": np.ones(shape, dtype=F32),
                "bar_delta": np.zeros(shape, dtype=F32)}

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        gain, bar_delta = state["gain"], state["bar_delta"]
        d = -grad if self.maximize else grad
        if self.has_weight_decay:
            d = d + self.weight_decay * param
        agreement = bar_delta * d
        increased = gain + self.kappa
        increased = np.where(increased < self.max_gain, increased, self.max_gain)
        decreased = gain * self.one_minus_phi
        decreased = np.where(decreased > self.min_gain, decreased, self.min_gain)
        gain[...] = np.where(agreement > 0, increased,
                             np.where(agreement < 0, decreased, gain))
        param[...] = param - self.lr * gain * d
        bar_delta[...] = self.one_minus_theta * d + self.theta * bar_delta
