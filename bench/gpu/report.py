#!/usr/bin/env python3
"""Prints bench/gpu/run.sh's results (JSON lines) as a table of images/s, the ratios of vitscale
to timm eager and timm + torch.compile, and peak memory."""
import json
import sys


def main(path):
    rows = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault(r["model"], {})[r["impl"]] = r
    header = (f"{'model':14} {'vitscale':>14} {'timm eager':>14} {'timm compile':>14} "
              f"{'/eager':>7} {'/compile':>8}  peak GiB (vitscale, eager, compile)")
    print(header)
    for model, impls in rows.items():
        def cell(impl):
            r = impls.get(impl)
            return f"{r['images_per_sec']:8.0f} (b{r['batch']})" if r else f"{'-':>14}"

        def ratio(impl):
            a, b = impls.get("vitscale"), impls.get(impl)
            return f"{a['images_per_sec'] / b['images_per_sec']:.2f}" if a and b else "-"

        peaks = ", ".join(
            f"{impls[i]['peak_gib']:.1f}" if i in impls else "-"
            for i in ("vitscale", "timm-eager", "timm-compile"))
        graph = impls.get("vitscale", {}).get("cuda_graph")
        eager = impls.get("vitscale-eager")
        print(f"{model:14} {cell('vitscale'):>14} {cell('timm-eager'):>14} "
              f"{cell('timm-compile'):>14} {ratio('timm-eager'):>7} {ratio('timm-compile'):>8}  "
              f"{peaks}" + ("" if graph is None else f"  cuda_graph={graph}") +
              ("" if eager is None else f"  without graphs {eager['images_per_sec']:.0f}"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build-gpu/out/results.jsonl")
