#!/usr/bin/env python3
"""timm's training images/s for bench/gpu/run.sh: the same step as vitscale-gpu-bench (bf16
autocast, AdamW with weight decay 0.1 and the fused kernel, clipping at global norm 1, 1000
classes, channels-last for models with a ResNet trunk, the loss read back every step), on
synthetic data already on the GPU, eager or under torch.compile. Prints one JSON line per
model and mode. The batch is halved until it fits."""
import argparse
import json
import sys
import time

import timm
import torch
import torch.nn.functional as F

CONV_TRUNK = ("resnet", "r50", "bit")


def measure(name, batch, resolution, compiled, steps, warmup):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=1000).cuda().train()
    if any(tag in name for tag in CONV_TRUNK):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    forward = torch.compile(model) if compiled else model
    images = torch.randn(batch, 3, resolution, resolution, device="cuda")
    if any(tag in name for tag in CONV_TRUNK):
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "images_per_sec": round(batch * steps / seconds, 1),
        "step_ms": round(1000 * seconds / steps, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a timm model name")
    parser.add_argument("--label", required=True, help="the vitscale name it stands for")
    parser.add_argument("--mode", choices=["eager", "compile"], required=True)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    batch = args.batch
    while batch >= 1:
        try:
            result = measure(args.model, batch, args.resolution, args.mode == "compile",
                             args.steps, args.warmup)
        except torch.cuda.OutOfMemoryError:
            print(f"timm {args.model} {args.mode}: out of memory at batch {batch}; halving",
                  file=sys.stderr)
            torch.cuda.empty_cache()
            batch //= 2
            continue
        print(json.dumps({"impl": f"timm-{args.mode}", "model": args.label, "timm": args.model,
                          "batch": batch, "resolution": args.resolution,
                          "torch": torch.__version__, "timm_version": timm.__version__,
                          **result}), flush=True)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
