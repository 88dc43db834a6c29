#!/usr/bin/python3
"""Write PyTorch reference gradient clipping cases ("clip goldens").

Each case draws random multi-tensor float32 gradients, clips them with
torch.nn.utils.clip_grad_norm_ (torch 1.13 semantics: always multiplies by
the clamped coefficient) or clip_grad_value_, and records the gradients
before and after and the total norm torch returned.  tests/unit/test_clip.c
replays every file through paramd's clip functions (server/clip.c).

Output, one file per case, tests/conformance/clip/<case>.json:

    {"name": "<case>",
     "generator": "tests/conformance/generate_clip_goldens.py",
     "torch_version": "<torch.__version__>",
     "clip": {"max_norm": 1.0, "norm_type": 2} or {"value": 0.5},
     "tensors": [{"shape": [...], "grad": [...], "clipped": [...]}, ...],
     "total_norm": <number, max_norm cases only>}

norm_type "inf" stands for torch's inf.  Numbers are float32 values written
as Python floats (exact).
"""
import json
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clip")

SHAPES = [[4, 3], [5], [], [2, 3, 2]]

CASES = [
    # name, clip, gradient scale (large: clipped; small: not)
    ("norm2_clipped", {"max_norm": 1.0, "norm_type": 2}, 3.0),
    ("norm2_unclipped", {"max_norm": 100.0, "norm_type": 2}, 0.5),
    ("norm1_clipped", {"max_norm": 2.0, "norm_type": 1}, 1.0),
    ("norm1_unclipped", {"max_norm": 1000.0, "norm_type": 1}, 1.0),
    ("norm3_5_clipped", {"max_norm": 0.5, "norm_type": 3.5}, 2.0),
    ("norm3_5_unclipped", {"max_norm": 50.0, "norm_type": 3.5}, 0.1),
    ("norminf_clipped", {"max_norm": 0.25, "norm_type": "inf"}, 1.0),
    ("norminf_unclipped", {"max_norm": 10.0, "norm_type": "inf"}, 1.0),
    ("value_clipped", {"value": 0.5}, 1.0),
    ("value_unclipped", {"value": 10.0}, 1.0),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    generator = torch.Generator().manual_seed(20240402)
    for name, clip, scale in CASES:
        grads = [torch.randn(shape, generator=generator, dtype=torch.float32) * scale
                 for shape in SHAPES]
        params = []
        for g in grads:
            p = torch.zeros(g.shape, dtype=torch.float32, requires_grad=True)
            p.grad = g.clone()
            params.append(p)
        case = {"name": name, "generator": "tests/conformance/generate_clip_goldens.py",
                "torch_version": torch.__version__, "clip": clip}
        if "value" in clip:
            torch.nn.utils.clip_grad_value_(params, clip["value"])
        else:
            norm_type = float("inf") if clip["norm_type"] == "inf" else clip["norm_type"]
            total = torch.nn.utils.clip_grad_norm_(params, clip["max_norm"], norm_type)
            case["total_norm"] = float(total)
        case["tensors"] = [{"shape": list(g.shape), "grad": g.flatten().tolist(),
                            "clipped": p.grad.flatten().tolist()}
                           for g, p in zip(grads, params)]
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(case, f, indent=1)
            f.write("\n")
        print(name, case.get("total_norm", ""))


if __name__ == "__main__":
    main()
