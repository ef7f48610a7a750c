"""The Python twin of vitscale-train-bench: one pretraining epoch of the same model with Debian's
python3-torch and a torch DataLoader, doing the same work per step as vitscale-train's loop.

Reads the C++ bench's JSON line on stdin and repeats its run: the model (bench/model_bench.py's
twins, checked by parameter count), dataset, augmentation (zero-padded random crop, flip, the
dataset's mean and std, gray replicated to 3 channels), batch, threads and loader workers, and the
recipe (AdamW with decay on rank >= 2 tensors only, warm-up then cosine, global-norm clipping,
the loss and train accuracy read back every step). Prints one JSON line.
    vitscale-train-bench --model ViT-Mu/7 | python3 bench/train_bench.py
"""
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_bench import ResNetV2, ViT  # noqa: E402


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def idx_path(directory, stem):
    for name in (stem + ".gz", stem):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    sys.exit(f"train_bench.py: {directory}/{stem}[.gz] is missing")


class AugmentedImages(torch.utils.data.Dataset):
    """Gray images, augmented per example as the C++ loader does for dense datasets."""

    def __init__(self, images, labels, c):
        self.images = torch.from_numpy(images.copy())
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.pad, self.flip = c["crop_padding"], c["flip"]
        self.mean = torch.tensor(c["mean"]).view(3, 1, 1)
        self.std = torch.tensor(c["std"]).view(3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i].float().div_(255.0)
        h, w = image.shape
        if self.pad > 0:
            y, x = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            image = F.pad(image, (self.pad,) * 4)[y:y + h, x:x + w]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(1)
        image = (image.expand(3, h, w) - self.mean) / self.std
        return image, self.labels[i]


def learning_rate(step, c):
    if step < c["warmup"]:
        return c["lr"] * (step + 1) / c["warmup"]
    decay_steps = c["steps"] - c["warmup"]
    if decay_steps <= 0:
        return 0.0
    progress = min(1.0, max(0.0, (step - c["warmup"]) / decay_steps))
    return c["lr"] * 0.5 * (1.0 + math.cos(math.pi * progress))


def main():
    c = json.loads(sys.stdin.readline())
    if c["dataset"] != "fashion-mnist":
        sys.exit(f"train_bench.py: only fashion-mnist has a reader here, not {c['dataset']}")
    torch.set_num_threads(c["threads"])
    torch.manual_seed(0)
    directory = os.path.join(c["datasets_dir"], "fashion-mnist")
    images = read_idx(idx_path(directory, "train-images-idx3-ubyte"))
    labels = read_idx(idx_path(directory, "train-labels-idx1-ubyte"))
    # Same size as the C++ subset (a different draw): the work per epoch is what is compared.
    subset = torch.randperm(len(labels))[:c["subset"]].numpy()
    data = AugmentedImages(images[subset], labels[subset], c)

    config = c["config"]
    if config["family"] == "ViT":
        model = ViT(config, c["resolution"], c["num_classes"])
    elif config["family"] == "ResNet":
        model = ResNetV2(config, c["num_classes"])
    else:
        sys.exit(f"train_bench.py: no Python twin for the {config['family']} family")
    params = sum(p.numel() for p in model.parameters())
    if params != c["params"]:
        sys.exit(f"train_bench.py: the twin of {c['model']} has {params} parameters, "
                 f"C++ {c['params']}: not the same model")
    model.train()
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    plain = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": c["weight_decay"]},
         {"params": plain, "weight_decay": 0.0}],
        lr=c["lr"], betas=(0.9, 0.999), eps=1e-8)
    loader = torch.utils.data.DataLoader(data, batch_size=c["batch"], shuffle=True,
                                         drop_last=True, num_workers=c["loader_threads"])

    # Timed like the C++ bench: from starting the loader (its worker) to the last step.
    start = time.perf_counter()
    images_seen, loss_value, accuracy = 0, 0.0, 0.0
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        loss_value = loss.item()
        accuracy = logits.argmax(1).eq(y).sum().item() / len(y)
        # clip 0 means "measure the norm, do not clip", as in the C++ loop.
        torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"] or math.inf)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, c)
        optimizer.step()
        images_seen += len(y)
    seconds = time.perf_counter() - start
    print(json.dumps({"impl": "Python", "model": c["model"], "batch": c["batch"],
                      "threads": c["threads"],
                      "torch_threads": torch.get_num_threads(), "loader_workers": c["loader_threads"],
                      "steps": step + 1, "images": images_seen, "params": params,
                      "seconds": seconds, "images_per_sec": images_seen / seconds,
                      "final_loss": loss_value, "final_train_accuracy": accuracy}), flush=True)


if __name__ == "__main__":
    main()
