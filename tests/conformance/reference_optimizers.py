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


# --------------------------------------------------------------------------
# Tensor-wise optimizers: a norm, a trust ratio, a factored second moment or
# a matrix iteration couples the elements of a tensor.  Norms and other sums
# are taken in double precision (paramd sums in a fixed lane order, numpy
# pairwise; the two differ by a few double-precision ulps, far below what
# changes the float32 results they feed).
# --------------------------------------------------------------------------

F64 = np.float64


def sum_of_squares(array):
    """sum(x^2) in double precision."""
    values = array.astype(F64)
    return float(np.sum(values * values))


def lerp(start, end, weight):
    """torch's CPU lerp, rounded as its scalar kernel: start + w * (end - start)
    for |w| < 0.5, else end - (end - start) * (1 - w), all in float32."""
    weight = F32(weight)
    if abs(weight) < F32(0.5):
        return start + weight * (end - start)
    return end - (end - start) * (F32(1) - weight)


class LAMB:
    """You et al., ICLR 2020, "Large Batch Optimization for Deep Learning:
    Training BERT in 76 minutes", Algorithm 2, with Adam's bias corrections
    (optional, as NVIDIA apex's FusedLAMB), the trust ratio set to 1 where a
    norm is 0, and timm's trust_clip and always_adapt switches."""

    name = "LAMB"
    state_slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
                 bias_correction=True, trust_clip=False, always_adapt=True, maximize=False):
        self.hyperparameters = dict(lr=lr, betas=tuple(betas), eps=eps,
                                    weight_decay=weight_decay, bias_correction=bias_correction,
                                    trust_clip=trust_clip, always_adapt=always_adapt,
                                    maximize=maximize)
        self.lr = lr
        self.beta1_double, self.beta2_double = float(betas[0]), float(betas[1])
        self.beta1, self.one_minus_beta1 = f32(betas[0]), f32(1.0 - betas[0])
        self.beta2, self.one_minus_beta2 = f32(betas[1]), f32(1.0 - betas[1])
        self.eps = f32(eps)
        self.weight_decay_double = weight_decay
        self.weight_decay = f32(weight_decay)
        self.bias_correction = bias_correction
        self.trust_clip = trust_clip
        self.always_adapt = always_adapt
        self.maximize = maximize

    def init_state(self, shape):
        return {"exp_avg": np.zeros(shape, dtype=F32), "exp_avg_sq": np.zeros(shape, dtype=F32)}

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        g = -grad if self.maximize else grad
        m[...] = self.beta1 * m + self.one_minus_beta1 * g
        v[...] = self.beta2 * v + self.one_minus_beta2 * (g * g)
        # The bias corrections as factors (reciprocals in double precision).
        if self.bias_correction:
            c1 = f32(1.0 / (1.0 - self.beta1_double ** step))
            c2 = f32(1.0 / math.sqrt(1.0 - self.beta2_double ** step))
        else:
            c1 = c2 = F32(1)
        r = (m * c1) / (np.sqrt(v) * c2 + self.eps)
        u = r + self.weight_decay * param
        weight_norm = math.sqrt(sum_of_squares(param))
        update_norm = math.sqrt(sum_of_squares(u))
        trust = weight_norm / update_norm if weight_norm > 0 and update_norm > 0 else 1.0
        if self.trust_clip:
            trust = min(trust, 1.0)
        if not self.always_adapt and self.weight_decay_double == 0:
            trust = 1.0
        param[...] = param + f32(-(self.lr * trust)) * u


class LARS:
    """You, Gitman and Ginsburg 2017, "Large Batch Training of Convolutional
    Networks", Algorithm 1: SGD with momentum (torch.optim.SGD's form) on the
    gradient rescaled by trust_coefficient * ||w|| / (||g|| + wd ||w|| + eps),
    with LARC's trust_clip and timm's always_adapt."""

    name = "LARS"
    state_slots = ("momentum_buffer",)

    def __init__(self, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 trust_coefficient=1e-3, eps=1e-8, trust_clip=False, always_adapt=True,
                 maximize=False):
        self.hyperparameters = dict(lr=lr, momentum=momentum, dampening=dampening,
                                    weight_decay=weight_decay, nesterov=nesterov,
                                    trust_coefficient=trust_coefficient, eps=eps,
                                    trust_clip=trust_clip, always_adapt=always_adapt,
                                    maximize=maximize)
        self.lr_double = lr
        self.negative_lr = f32(-lr)
        self.momentum_double = momentum
        self.momentum = f32(momentum)
        self.one_minus_dampening = f32(1.0 - dampening)
        self.weight_decay_double = weight_decay
        self.weight_decay = f32(weight_decay)
        self.nesterov = nesterov
        self.trust_coefficient = trust_coefficient
        self.eps = eps
        self.trust_clip = trust_clip
        self.always_adapt = always_adapt
        self.maximize = maximize

    def init_state(self, shape):
        if self.momentum_double == 0:
            return {}
        return {"momentum_buffer": np.zeros(shape, dtype=F32)}

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        trust = 1.0
        if self.always_adapt or self.weight_decay_double != 0:
            weight_norm = math.sqrt(sum_of_squares(param))
            grad_norm = math.sqrt(sum_of_squares(grad))
            if weight_norm > 0 and grad_norm > 0:
                trust = (self.trust_coefficient * weight_norm
                         / (grad_norm + self.weight_decay_double * weight_norm + self.eps))
            if self.trust_clip:
                trust = trust / self.lr_double if self.lr_double > 0 and trust / self.lr_double < 1 else 1.0
        d = -grad if self.maximize else grad
        if self.weight_decay_double != 0:
            d = d + self.weight_decay * param
        d = d * f32(trust)
        if self.momentum_double != 0:
            buffer = state["momentum_buffer"]
            if step == 1:
                buffer[...] = d
            else:
                buffer[...] = self.momentum * buffer + self.one_minus_dampening * d
            d = d + self.momentum * buffer if self.nesterov else buffer.copy()
        param[...] = param + self.negative_lr * d


class Adafactor:
    """Shazeer and Stern 2018, "Adafactor: Adaptive Learning Rates with
    Sublinear Memory Cost", in the form of PyTorch 2.x's torch.optim.Adafactor
    (its docstring's algorithm and its single-tensor code): relative step
    size rho = min(lr, 1/sqrt(t)), parameter scaling by max(eps2, RMS(p)),
    beta2_t = 1 - t^beta2_decay, a second moment factored over the last two
    dimensions for tensors of 2 or more dimensions, eps1 applied to the
    row-factor mean and the variance estimate, update clipping by d, and
    decoupled weight decay lr * weight_decay."""

    name = "Adafactor"
    state_slots = ("row_var", "col_var", "variance")

    def __init__(self, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0,
                 maximize=False):
        eps1 = float(np.finfo(np.float32).eps) if eps[0] is None else eps[0]
        self.hyperparameters = dict(lr=lr, beta2_decay=beta2_decay, eps=(eps1, eps[1]), d=d,
                                    weight_decay=weight_decay, maximize=maximize)
        self.lr = lr
        self.beta2_decay = beta2_decay
        self.eps1 = f32(eps1)
        self.floor = f32(eps1 * eps1)
        self.eps2 = eps[1]
        self.d = d
        self.decay_factor = f32(1.0 - lr * weight_decay)
        self.maximize = maximize

    def init_state(self, shape):
        if len(shape) >= 2:
            row_shape = list(shape[:-1]) + [1]
            col_shape = list(shape[:-2]) + [1, shape[-1]]
            return {"row_var": np.zeros(row_shape, dtype=F32),
                    "col_var": np.zeros(col_shape, dtype=F32)}
        return {"variance": np.zeros(shape, dtype=F32)}

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        g = -grad if self.maximize else grad
        t = float(step)
        weight = f32(t ** self.beta2_decay)
        rho = min(self.lr, 1.0 / math.sqrt(t))
        alpha = max(self.eps2, math.sqrt(sum_of_squares(param)) / math.sqrt(param.size)) * rho
        if param.ndim >= 2:
            rows, columns = param.shape[-2], param.shape[-1]
            squares = g.astype(F64) * g.astype(F64)
            row_mean = (np.sum(squares, axis=-1, keepdims=True) / columns).astype(F32)
            col_mean = (np.sum(squares, axis=-2, keepdims=True) / rows).astype(F32)
            row_var, col_var = state["row_var"], state["col_var"]
            row_var[...] = lerp(row_var, row_mean, weight)
            col_var[...] = lerp(col_var, col_mean, weight)
            mean = (np.sum(row_var.astype(F64), axis=-2, keepdims=True) / rows).astype(F32)
            mean = np.maximum(mean, self.eps1)
            v = (row_var * col_var) / mean
        else:
            variance = state["variance"]
            variance[...] = lerp(variance, g * g, weight)
            v = variance
        u = (F32(1) / np.sqrt(np.maximum(v, self.floor))) * g
        denominator = max(1.0, math.sqrt(sum_of_squares(u)) / (math.sqrt(param.size) * self.d))
        param[...] = param * self.decay_factor + f32(-alpha / denominator) * u


class Muon:
    """Keller Jordan 2024, "Muon: An optimizer for hidden layers in neural
    networks", in the form of PyTorch 2.9's torch.optim.Muon (lerp momentum,
    Nesterov by lerp, the quintic Newton-Schulz iteration on the smaller Gram
    matrix, the "original" and "match_rms_adamw" lr adjustments, decoupled
    weight decay), in float32 where torch uses bfloat16.  Tensors that are
    not 2-D (or all tensors, with use_muon=False) take torch.optim.AdamW's
    step with adamw_betas and adamw_eps: that part needs torch, and is
    torch's own code (torch.optim._functional.adamw)."""

    name = "Muon"
    state_slots = ("momentum_buffer", "exp_avg", "exp_avg_sq")
    needs_torch = True

    def __init__(self, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5,
                 adjust_lr_fn=None, use_muon=True, adamw_betas=(0.9, 0.95), adamw_eps=1e-10):
        self.hyperparameters = dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                    nesterov=nesterov, ns_coefficients=tuple(ns_coefficients),
                                    eps=eps, ns_steps=ns_steps,
                                    adjust_lr_fn=adjust_lr_fn or "original", use_muon=use_muon,
                                    adamw_betas=tuple(adamw_betas), adamw_eps=adamw_eps)
        self.lr, self.weight_decay = lr, weight_decay
        self.complement, self.momentum = f32(1.0 - momentum), f32(momentum)
        self.nesterov = nesterov
        self.a, self.b, self.c = (f32(x) for x in ns_coefficients)
        self.eps, self.ns_steps = eps, ns_steps
        self.adjust_lr_fn = adjust_lr_fn or "original"
        self.use_muon = use_muon
        self.adamw_betas, self.adamw_eps = tuple(adamw_betas), adamw_eps
        self.decay_factor = f32(1.0 - lr * weight_decay)

    def orthogonalised(self, shape):
        return len(shape) == 2 and self.use_muon

    def init_state(self, shape):
        if self.orthogonalised(shape):
            return {"momentum_buffer": np.zeros(shape, dtype=F32)}
        return {"exp_avg": np.zeros(shape, dtype=F32), "exp_avg_sq": np.zeros(shape, dtype=F32)}

    def adjusted_lr(self, rows, columns):
        if self.adjust_lr_fn == "match_rms_adamw":
            return self.lr * 0.2 * math.sqrt(max(rows, columns))
        return self.lr * math.sqrt(max(1.0, rows / columns))

    def step(self, param, grad, state, step):
        _check(param), _check(grad)
        if not self.orthogonalised(param.shape):
            self._adamw_step(param, grad, state, step)
            return
        buffer = state["momentum_buffer"]
        buffer[...] = lerp(buffer, grad, self.complement)
        update = lerp(grad, buffer, self.momentum) if self.nesterov else buffer.copy()
        x = update * (F32(1) / F32(max(math.sqrt(sum_of_squares(update)), self.eps)))
        rows, columns = param.shape
        if rows > columns:
            x = x.T
        for _ in range(self.ns_steps):
            gram = x @ x.T
            polynomial = self.b * gram + self.c * (gram @ gram)
            x = self.a * x + polynomial @ x
        if rows > columns:
            x = x.T
        param[...] = param * self.decay_factor + f32(-self.adjusted_lr(rows, columns)) * x

    def _adamw_step(self, param, grad, state, step):
        import torch
        from torch.optim import _functional
        p = torch.from_numpy(param)  # shares memory: updated in place
        _functional.adamw([p], [torch.from_numpy(grad.copy())],
                          [torch.from_numpy(state["exp_avg"])],
                          [torch.from_numpy(state["exp_avg_sq"])], [],
                          [torch.tensor(float(step - 1))], foreach=False, capturable=False,
                          amsgrad=False, beta1=self.adamw_betas[0], beta2=self.adamw_betas[1],
                          lr=self.lr, weight_decay=self.weight_decay, eps=self.adamw_eps,
                          maximize=False)
