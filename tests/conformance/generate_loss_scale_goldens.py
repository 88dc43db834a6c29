#!/usr/bin/python3
"""Write dynamic loss scaling golden files (torch.cuda.amp.GradScaler).

torch 1.13 on CPU has neither torch._amp_update_scale_ nor
torch._amp_foreach_non_finite_check_and_unscale_ (both are CUDA-only there;
GradScaler disables itself without CUDA), so this script replicates
GradScaler's arithmetic from torch's source, with torch's own CPU tensor
operations wherever they exist:

  - inv_scale = scale.double().reciprocal().float()       (GradScaler._unscale_grads_)
  - unscaled = grad * inv_scale, in float32                (torch CPU float32 mul)
  - found_inf: any non-finite value after unscaling        (paramd checks after
    unscaling, torch's kernel before; the cases keep both the same)
  - _amp_update_scale_ (aten/src/ATen/native/cuda/AmpKernels.cu, the same in
    torch 2.x's CPU kernel), with scale a float32 tensor and the factors
    Python floats (C++ doubles):
        if found_inf: scale = float(scale * backoff_factor); tracker = 0
        else: successful = tracker + 1
              if successful == growth_interval:
                  new_scale = float(scale * growth_factor)
                  if isfinite(new_scale): scale = new_scale
                  tracker = 0
              else: tracker = successful

tests/unit/test_loss_scale.c replays every file through server/loss_scale.c
and through paramd__core_push.  Output, one file per case,
tests/conformance/loss_scale/<case>.json:

    {"name", "generator", "torch_version", "note",
     "loss_scale": {"init_scale", "growth_factor", "backoff_factor", "growth_interval"},
     "steps": [{"grad": [...], "nonfinite": [index, ...], "scale_used": s,
                "inv_scale": i, "unscaled": [...] (good steps only),
                "skipped": bool, "scale": <after>, "growth_tracker": <after>}, ...]}

Gradients are finite float32 values written exactly; "nonfinite" lists the
indices that hold inf (even positions) or nan (odd positions), which JSON
cannot carry.
"""
import json
import math
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loss_scale")

CASES = [
    # name, config, steps, size, which steps overflow
    ("defaults_short", {"init_scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                        "growth_interval": 2000}, 12, 5, {2, 3, 7}),
    ("growth_every_3", {"init_scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                        "growth_interval": 3}, 40, 4, {5, 6, 17, 30}),
    ("odd_factors", {"init_scale": 1000.0, "growth_factor": 3.0, "backoff_factor": 0.3,
                     "growth_interval": 2}, 40, 4, {1, 4, 9, 10, 11, 25}),
    ("growth_capped_at_float_max", {"init_scale": 1e38, "growth_factor": 2.5,
                                    "backoff_factor": 0.75, "growth_interval": 1},
     12, 3, {6}),
    ("backoff_to_subnormal", {"init_scale": 1e-36, "growth_factor": 1.5, "backoff_factor": 0.1,
                              "growth_interval": 4}, 16, 3, {0, 1}),
    ("interval_one", {"init_scale": 3.0, "growth_factor": 1.25, "backoff_factor": 0.875,
                      "growth_interval": 1}, 30, 3, {10, 20}),
]


def update(scale, tracker, found_inf, config):
    """_amp_update_scale_: scale is a float32 tensor, the factors doubles."""
    if found_inf:
        return torch.tensor(scale.item() * config["backoff_factor"], dtype=torch.float32), 0
    successful = tracker + 1
    if successful == config["growth_interval"]:
        new_scale = torch.tensor(scale.item() * config["growth_factor"], dtype=torch.float32)
        if math.isfinite(new_scale.item()):
            scale = new_scale
        return scale, 0
    return scale, successful


def main():
    os.makedirs(OUT, exist_ok=True)
    generator = torch.Generator().manual_seed(20240417)
    for name, config, step_count, size, overflowing in CASES:
        scale = torch.tensor(config["init_scale"], dtype=torch.float32)
        tracker = 0
        steps = []
        for step in range(step_count):
            # Gradients as a worker would push them: scaled by the current scale.
            grad = torch.randn(size, generator=generator, dtype=torch.float32) * scale
            grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
            nonfinite = []
            if step in overflowing:
                nonfinite = [step % size]
                grad[step % size] = float("inf") if step % 2 == 0 else float("nan")
            inv_scale = scale.double().reciprocal().float()
            unscaled = grad * inv_scale
            found_inf = not bool(torch.isfinite(unscaled).all())
            assert found_inf == bool(nonfinite), (name, step)
            record = {"grad": [0.0 if i in nonfinite else float(v) for i, v in enumerate(grad)],
                      "nonfinite": nonfinite, "scale_used": float(scale),
                      "inv_scale": float(inv_scale), "skipped": found_inf}
            if not found_inf:
                record["unscaled"] = [float(v) for v in unscaled]
            scale, tracker = update(scale, tracker, found_inf, config)
            record["scale"] = float(scale)
            record["growth_tracker"] = tracker
            steps.append(record)
        case = {"name": name, "generator": "tests/conformance/generate_loss_scale_goldens.py",
                "torch_version": torch.__version__,
                "note": "GradScaler's arithmetic replicated from torch's source with torch CPU "
                        "tensors (torch 1.13 has no CPU _amp_update_scale_)",
                "loss_scale": config, "steps": steps}
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(case, f, indent=1)
            f.write("\n")
        print(name, [s["scale"] for s in steps][-3:])


if __name__ == "__main__":
    main()
