#!/usr/bin/python3
"""Write PyTorch reference learning-rate schedules ("schedule goldens").

Each case builds a torch.optim optimizer on one dummy parameter, wraps it in a
torch.optim.lr_scheduler scheduler, and runs STEPS optimizer steps, calling
scheduler.step() once after every optimizer.step() (ReduceLROnPlateau gets
the case's loss of that step).  It records the learning rate each optimizer
step used, and the momentum (SGD, RMSprop) or beta1 (Adam) where the schedule
cycles it.  tests/unit/test_schedule.c replays every file through paramd's
schedules and requires every number to be the same double; it needs no torch.

Output, one file per case, tests/conformance/schedules/<case>.json:

    {"name": "<case>",
     "generator": "tests/conformance/generate_schedule_goldens.py",
     "torch_version": "<torch.__version__>",
     "optimizer": {"name": "SGD", "lr": 0.1, ...every hyperparameter...},
     "schedule": {"name": "CosineAnnealingLR", "T_max": 20, ...},
     "losses": [...] or null,
     "lr": [...],
     "momentum": [...] or null}

"schedule" holds exactly the keyword arguments the case passes to torch (the
defaults of the rest are torch's and paramd's alike); SequentialLR and
ChainedScheduler carry their children, built in order on the same optimizer,
in "schedulers".  lr[i] and momentum[i] are the values optimizer step i + 1
used; losses[i] is the loss passed to ReduceLROnPlateau after that step (the
last one is never passed: no scheduler.step() follows the last optimizer
step, so that OneCycleLR may run exactly total_steps + 1 optimizer steps, the
most torch allows).
json.dump writes every float as its shortest round-trip repr, so the C test
reads back exactly torch's doubles.

Usage:
    /usr/bin/python3 tests/conformance/generate_schedule_goldens.py [--out DIR] [CASE ...]

Needs Debian's python3-torch (deploy/install-deps.sh --goldens).
"""

import argparse
import inspect
import json
import math
import os
import sys
import warnings

import torch
from torch.optim import lr_scheduler

STEPS = 60


# --------------------------------------------------------------------------
# Loss sequences for ReduceLROnPlateau, one value per step.
# --------------------------------------------------------------------------

def losses_falling_then_flat():
    """Falls for 10 steps, then plateaus with small noise, falls again, and
    plateaus for good: reductions, cooldowns and finally min_lr."""
    losses = []
    for step in range(STEPS):
        if step < 10:
            losses.append(1.0 / (1 + step))
        elif step < 25:
            losses.append(0.1 + 0.001 * ((step * 7) % 3))
        elif step < 30:
            losses.append(0.09 - 0.01 * (step - 25))
        else:
            losses.append(0.05 + 0.0001 * ((step * 5) % 4))
    return losses


def losses_rising_slowly():
    """An accuracy-like metric for mode "max": rises in steps of varying size,
    some below the threshold, with flat stretches."""
    losses = []
    value = 0.5
    for step in range(STEPS):
        if step % 11 < 4:
            value += 0.02
        elif step % 11 < 7:
            value += 0.004
        losses.append(round(value, 6))
    return losses


def losses_noisy():
    """A falling loss with deterministic noise: improvements that pass a
    relative threshold of 1e-2 and ones that do not."""
    return [0.8 * math.exp(-step / 25.0) * (1 + 0.02 * math.sin(step * 1.7))
            for step in range(STEPS)]


# --------------------------------------------------------------------------
# Case table: name -> (optimizer, schedule, losses or None).
# optimizer: (torch.optim class name, keyword arguments); its unset
# hyperparameters are recorded with torch's defaults.
# schedule: {"name": class name, keyword arguments...}, nested in
# "schedulers" for SequentialLR and ChainedScheduler.
# --------------------------------------------------------------------------

SGD = ("SGD", dict(lr=0.1))
SGD_MOMENTUM = ("SGD", dict(lr=0.1, momentum=0.9))
ADAM = ("Adam", dict(lr=0.01))

CASES = {
    "steplr": (SGD, dict(name="StepLR", step_size=7, gamma=0.5), None),
    "steplr_default_gamma": (("SGD", dict(lr=0.3)), dict(name="StepLR", step_size=4), None),
    "multisteplr": (ADAM, dict(name="MultiStepLR", milestones=[5, 17, 17, 40], gamma=0.3), None),
    "multisteplr_default_gamma": (SGD, dict(name="MultiStepLR", milestones=[0, 13, 29, 30, 31]), None),
    "constantlr_default": (SGD, dict(name="ConstantLR"), None),
    "constantlr_factor": (("SGD", dict(lr=0.7)), dict(name="ConstantLR", factor=0.1, total_iters=12), None),
    "constantlr_zero_iters": (SGD, dict(name="ConstantLR", factor=0.5, total_iters=0), None),
    "linearlr_default": (SGD, dict(name="LinearLR"), None),
    "linearlr_warmup": (ADAM, dict(name="LinearLR", start_factor=0.01, total_iters=30), None),
    "linearlr_decay": (SGD, dict(name="LinearLR", start_factor=1.0, end_factor=0.05, total_iters=40), None),
    "exponentiallr": (SGD, dict(name="ExponentialLR", gamma=0.93), None),
    "polynomiallr_default": (SGD, dict(name="PolynomialLR"), None),
    "polynomiallr_power": (ADAM, dict(name="PolynomialLR", total_iters=45, power=2.5), None),
    "cosineannealinglr": (SGD, dict(name="CosineAnnealingLR", T_max=20, eta_min=0.001), None),
    "cosineannealinglr_long": (ADAM, dict(name="CosineAnnealingLR", T_max=50), None),
    "cosineannealingwarmrestarts": (SGD, dict(name="CosineAnnealingWarmRestarts", T_0=10), None),
    "cosineannealingwarmrestarts_mult": (ADAM, dict(name="CosineAnnealingWarmRestarts", T_0=5, T_mult=2, eta_min=1e-4), None),
    "cycliclr_triangular": (SGD_MOMENTUM, dict(name="CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=8), None),
    "cycliclr_triangular2": (SGD_MOMENTUM, dict(name="CyclicLR", base_lr=0.001, max_lr=0.05, step_size_up=5,
                                                step_size_down=10, mode="triangular2"), None),
    "cycliclr_exp_range": (("RMSprop", dict(lr=0.01, momentum=0.5)),
                           dict(name="CyclicLR", base_lr=0.002, max_lr=0.02, step_size_up=6, mode="exp_range",
                                gamma=0.97, base_momentum=0.85, max_momentum=0.95), None),
    "cycliclr_sawtooth": (SGD_MOMENTUM, dict(name="CyclicLR", base_lr=0.05, max_lr=0.005, step_size_up=7,
                                             step_size_down=0, mode="exp_range", gamma=0.99), None),
    # torch 1.13's CyclicLR can cycle only a "momentum" hyperparameter, so
    # with Adam cycle_momentum must be off.
    "cycliclr_adam_no_momentum": (ADAM, dict(name="CyclicLR", base_lr=0.0001, max_lr=0.003, step_size_up=9,
                                             step_size_down=4, cycle_momentum=False), None),
    "onecyclelr_cos": (SGD_MOMENTUM, dict(name="OneCycleLR", max_lr=0.2, total_steps=59), None),
    "onecyclelr_linear_adam": (ADAM, dict(name="OneCycleLR", max_lr=0.01, epochs=6, steps_per_epoch=10,
                                          anneal_strategy="linear", pct_start=0.4), None),
    "onecyclelr_three_phase": (ADAM, dict(name="OneCycleLR", max_lr=0.05, total_steps=60, pct_start=0.25,
                                          div_factor=10.0, final_div_factor=100.0, three_phase=True,
                                          base_momentum=0.8, max_momentum=0.9), None),
    "onecyclelr_three_phase_linear": (SGD_MOMENTUM, dict(name="OneCycleLR", max_lr=1.0, total_steps=70,
                                                         pct_start=0.35, anneal_strategy="linear",
                                                         three_phase=True), None),
    "onecyclelr_no_momentum": (("Adagrad", dict(lr=0.01)), dict(name="OneCycleLR", max_lr=0.3, total_steps=100,
                                                               cycle_momentum=False), None),
    "reducelronplateau_min_rel": (SGD, dict(name="ReduceLROnPlateau", factor=0.5, patience=3, cooldown=2,
                                            min_lr=0.02), losses_falling_then_flat()),
    "reducelronplateau_max_abs": (ADAM, dict(name="ReduceLROnPlateau", mode="max", threshold=0.01,
                                             threshold_mode="abs", patience=2, factor=0.3), losses_rising_slowly()),
    "reducelronplateau_min_abs": (SGD_MOMENTUM, dict(name="ReduceLROnPlateau", threshold=0.005,
                                                     threshold_mode="abs", patience=1, cooldown=1, factor=0.7,
                                                     min_lr=0.01, eps=0.015), losses_noisy()),
    "reducelronplateau_max_rel": (SGD, dict(name="ReduceLROnPlateau", mode="max", threshold=0.05, patience=4),
                                  losses_rising_slowly()),
    "reducelronplateau_default": (SGD, dict(name="ReduceLROnPlateau"), losses_falling_then_flat()),
    "sequentiallr_warmup_cosine": (SGD_MOMENTUM, dict(name="SequentialLR", schedulers=[
        dict(name="LinearLR", start_factor=0.1, total_iters=10),
        dict(name="CosineAnnealingLR", T_max=50, eta_min=1e-4)], milestones=[10]), None),
    "sequentiallr_three": (ADAM, dict(name="SequentialLR", schedulers=[
        dict(name="ConstantLR", factor=0.5, total_iters=5),
        dict(name="ExponentialLR", gamma=0.9),
        dict(name="StepLR", step_size=5, gamma=0.5)], milestones=[8, 30]), None),
    "sequentiallr_restarts": (SGD, dict(name="SequentialLR", schedulers=[
        dict(name="PolynomialLR", total_iters=12, power=0.5),
        dict(name="CosineAnnealingWarmRestarts", T_0=7, eta_min=0.01),
        dict(name="MultiStepLR", milestones=[0, 5], gamma=0.2)], milestones=[15, 40]), None),
    # OneCycleLR overwrites the group's initial_lr when it is built, so the
    # warm-up starts from max_lr / div_factor rather than the optimizer's lr,
    # and the momentum is OneCycleLR's from the start.
    "sequentiallr_onecycle": (SGD_MOMENTUM, dict(name="SequentialLR", schedulers=[
        dict(name="LinearLR", start_factor=0.5, total_iters=6),
        dict(name="OneCycleLR", max_lr=0.5, total_steps=51)], milestones=[8]), None),
    "sequentiallr_cyclic": (SGD_MOMENTUM, dict(name="SequentialLR", schedulers=[
        dict(name="ExponentialLR", gamma=0.95),
        dict(name="CyclicLR", base_lr=0.01, max_lr=0.04, step_size_up=5, mode="triangular2")],
        milestones=[12]), None),
    "chainedscheduler": (("SGD", dict(lr=1.0)), dict(name="ChainedScheduler", schedulers=[
        dict(name="ConstantLR", factor=0.1, total_iters=2),
        dict(name="ExponentialLR", gamma=0.9)]), None),
    "chainedscheduler_warmup_cosine_step": (ADAM, dict(name="ChainedScheduler", schedulers=[
        dict(name="LinearLR", start_factor=0.2, total_iters=8),
        dict(name="CosineAnnealingLR", T_max=25, eta_min=0.0005),
        dict(name="StepLR", step_size=10, gamma=0.7)]), None),
    # CyclicLR built after another scheduler takes its first lr from the
    # group's initial_lr (the optimizer's lr), not from base_lr.
    "chainedscheduler_cyclic": (SGD_MOMENTUM, dict(name="ChainedScheduler", schedulers=[
        dict(name="ExponentialLR", gamma=0.98),
        dict(name="CyclicLR", base_lr=0.01, max_lr=0.05, step_size_up=6),
        dict(name="MultiStepLR", milestones=[20, 40], gamma=0.5)]), None),
}

GENERATOR = "tests/conformance/generate_schedule_goldens.py"

# Optimizer arguments that select an implementation, never recorded.
IMPLEMENTATION_ARGS = {"foreach", "capturable", "differentiable", "fused"}


def full_kwargs(optimizer_class, kwargs):
    """The case's optimizer arguments plus the class defaults for the rest."""
    full = {}
    signature = inspect.signature(optimizer_class.__init__)
    for name, parameter in signature.parameters.items():
        if name in ("self", "params") or name in IMPLEMENTATION_ARGS:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in kwargs:
            full[name] = kwargs[name]
        elif parameter.default is not inspect.Parameter.empty and \
                isinstance(parameter.default, (bool, int, float, tuple)):
            full[name] = parameter.default
        else:
            raise ValueError("%s: no value for argument %r" % (optimizer_class.__name__, name))
    unknown = set(kwargs) - set(full)
    if unknown:
        raise ValueError("%s: unknown arguments %s" % (optimizer_class.__name__, sorted(unknown)))
    return full


def json_value(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, tuple):
        return [json_value(v) for v in value]
    raise TypeError("cannot record %r" % (value,))


def build_scheduler(optimizer, schedule):
    """Builds the torch scheduler a schedule record describes; children first,
    in order, as a user would."""
    kwargs = dict(schedule)
    name = kwargs.pop("name")
    if name in ("SequentialLR", "ChainedScheduler"):
        children = [build_scheduler(optimizer, child) for child in kwargs.pop("schedulers")]
        if name == "ChainedScheduler":
            return lr_scheduler.ChainedScheduler(children, **kwargs)
        return lr_scheduler.SequentialLR(optimizer, children, **kwargs)
    return getattr(lr_scheduler, name)(optimizer, **kwargs)


def cycles_momentum(schedule):
    """Whether a CyclicLR or OneCycleLR in the schedule cycles momentum."""
    if schedule["name"] in ("SequentialLR", "ChainedScheduler"):
        return any(cycles_momentum(child) for child in schedule["schedulers"])
    if schedule["name"] in ("CyclicLR", "OneCycleLR"):
        return schedule.get("cycle_momentum", True)
    return False


def generate(case_name):
    (optimizer_name, optimizer_kwargs), schedule, losses = CASES[case_name]
    optimizer_class = getattr(torch.optim, optimizer_name)
    optimizer_kwargs = full_kwargs(optimizer_class, optimizer_kwargs)

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = optimizer_class([param], **optimizer_kwargs)
    with warnings.catch_warnings():
        # SequentialLR steps its children with the deprecated epoch argument.
        warnings.simplefilter("ignore")
        scheduler = build_scheduler(optimizer, schedule)
        group = optimizer.param_groups[0]
        with_momentum = cycles_momentum(schedule)
        lrs, momenta = [], []
        for step in range(STEPS):
            lrs.append(group["lr"])
            if with_momentum:
                momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
            param.grad = torch.ones(1)
            optimizer.step()
            if step == STEPS - 1:
                break  # the lr after the last step is never used
            if losses is not None:
                scheduler.step(losses[step])
            else:
                scheduler.step()

    optimizer_record = {"name": optimizer_name}
    optimizer_record.update((k, json_value(v)) for k, v in optimizer_kwargs.items())
    return {
        "name": case_name,
        "generator": GENERATOR,
        "torch_version": torch.__version__,
        "optimizer": optimizer_record,
        "schedule": schedule,
        "losses": losses,
        "lr": lrs,
        "momentum": momenta if with_momentum else None,
    }


def main(argv=None):
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schedules")
    parser = argparse.ArgumentParser(description="Write PyTorch reference learning-rate schedules.")
    parser.add_argument("--out", default=default_out, help="output directory (default: %(default)s)")
    parser.add_argument("cases", nargs="*", metavar="CASE",
                        help="cases to regenerate (default: all): " + ", ".join(CASES))
    args = parser.parse_args(argv)

    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error("unknown case(s): %s" % ", ".join(unknown))

    os.makedirs(args.out, exist_ok=True)
    for case_name in args.cases or list(CASES):
        golden = generate(case_name)
        path = os.path.join(args.out, case_name + ".json")
        temporary = path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(golden, handle, indent=1, allow_nan=False)
            handle.write("\n")
        os.replace(temporary, path)
        print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
