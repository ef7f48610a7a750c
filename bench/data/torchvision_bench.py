"""The baseline: torchvision's ImageFolder + RandomResizedCrop(224) + RandomHorizontalFlip +
ToTensor + Normalize through a DataLoader, as a PyTorch ImageNet training script feeds its
model. Prints one JSON line: images per second over --batches batches after one warm-up batch.

    /usr/bin/python3 bench/data/torchvision_bench.py FOLDER --workers N [--batch 64]
--workers 0 decodes in the main process (one core); N > 0 uses N worker processes.
"""
import argparse
import json
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--resolution", type=int, default=224)
    a = parser.parse_args()
    torch.set_num_threads(1)
    transform = transforms.Compose([
        transforms.RandomResizedCrop(a.resolution),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    dataset = datasets.ImageFolder(a.folder, transform=transform)
    loader = DataLoader(dataset, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        drop_last=True, persistent_workers=a.workers > 0)
    it = iter(loader)
    next(it)  # warm-up: workers started, first batches in flight
    start = time.perf_counter()
    cpu_start = time.process_time()  # this process only: exact when --workers 0
    images = 0
    for _ in range(a.batches):
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, _ = next(it)
        images += x.shape[0]
    seconds = time.perf_counter() - start
    result = {"side": "torchvision", "workers": a.workers, "images": images,
              "seconds": seconds, "images_per_sec": images / seconds}
    if a.workers == 0:
        cpu_seconds = time.process_time() - cpu_start
        result.update(cpu_seconds=cpu_seconds, images_per_cpu_sec=images / cpu_seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
