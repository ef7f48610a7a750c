"""The Python twin of vitscale-model-bench: the same ViT and ResNet-v2 architectures written
with torch.nn, timed the same way (forward, backward, AdamW), one JSON line per model.

Reads the C++ bench's JSON lines (for each model's config, batch and threads) on stdin.
    vitscale-model-bench ... | tee cpp.jsonl; python3 bench/model_bench.py < cpp.jsonl
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width, mlp_dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)

    def attention(self, x):
        b, t, d = x.shape
        h = self.heads
        qkv = self.qkv(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q = qkv[0].reshape(b * h, t, d // h)
        k = qkv[1].reshape(b * h, t, d // h)
        v = qkv[2].reshape(b * h, t, d // h)
        scores = torch.bmm(q, k.transpose(1, 2)).mul_(1.0 / math.sqrt(d // h))
        out = torch.bmm(scores.softmax(-1), v).view(b, h, t, d // h)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))

    def forward(self, x):
        y = x + self.attention(self.norm1(x))
        return y + self.fc2(F.gelu(self.fc1(self.norm2(y))))


class ViT(nn.Module):
    def __init__(self, c, resolution, num_classes):
        super().__init__()
        d, p = c["width"], c["patch"]
        grid = resolution // p
        self.embedding = nn.Conv2d(3, d, p, stride=p)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = nn.Parameter(torch.randn(1, grid * grid + 1, d) * 0.02)
        self.blocks = nn.ModuleList(
            [Block(d, c["mlp_dim"], c["heads"]) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images):
        x = self.embedding(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos_embedding
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).select(1, 0))


class StdConv2d(nn.Module):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.stride, self.padding = stride, kernel // 2

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.weight.shape[0], -1), None, None,
                         training=True, momentum=0.0, eps=1e-5).reshape_as(self.weight)
        return F.conv2d(x, w, None, self.stride, self.padding)


class PreActBottleneck(nn.Module):
    def __init__(self, cin, mid, cout, stride, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = StdConv2d(cin, mid, 1, 1)
        self.norm2 = nn.GroupNorm(groups, mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride)
        self.norm3 = nn.GroupNorm(groups, mid)
        self.conv3 = StdConv2d(mid, cout, 1, 1)
        self.proj = StdConv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        pre = F.relu(self.norm1(x))
        shortcut = self.proj(pre) if self.proj is not None else x
        y = self.conv1(pre)
        y = self.conv2(F.relu(self.norm2(y)))
        y = self.conv3(F.relu(self.norm3(y)))
        return y.add_(shortcut)


class ResNetV2(nn.Module):
    def __init__(self, c, num_classes):
        super().__init__()
        stem = c["base_width"] * c["width_factor"]
        self.small_stem = c["small_stem"]
        self.stem = StdConv2d(3, stem, 3 if self.small_stem else 7, 1 if self.small_stem else 2)
        blocks, cin = [], stem
        for s, count in enumerate(c["blocks"]):
            mid = stem << s
            for b in range(count):
                blocks.append(PreActBottleneck(cin, mid, 4 * mid, 2 if b == 0 and s > 0 else 1,
                                               c["groups"]))
                cin = 4 * mid
        self.stages = nn.Sequential(*blocks)
        self.norm = nn.GroupNorm(c["groups"], cin)
        self.head = nn.Linear(cin, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images):
        x = self.stem(images)
        if not self.small_stem:
            x = F.max_pool2d(x, 3, 2, 1)
        x = F.relu(self.norm(self.stages(x)))
        return self.head(x.mean((2, 3)))


def main():
    for line in sys.stdin:
        cpp = json.loads(line)
        c = cpp["config"]
        torch.set_num_threads(cpp["threads"])
        torch.manual_seed(0)
        if c["family"] == "ViT":
            model = ViT(c, cpp["resolution"], cpp["num_classes"])
        elif c["family"] == "ResNet":
            model = ResNetV2(c, cpp["num_classes"])
        else:
            print(f"skipping {cpp['model']}: no Python twin for {c['family']}", file=sys.stderr)
            continue
        model.train()
        params = sum(p.numel() for p in model.parameters())
        batch, res = cpp["batch"], cpp["resolution"]
        images = torch.randn(batch, 3, res, res)
        labels = torch.randint(cpp["num_classes"], (batch,))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

        def step():
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()

        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(cpp["steps"]):
            step()
        seconds = time.perf_counter() - start
        print(json.dumps({"impl": "Python", "model": cpp["model"], "resolution": res,
                          "batch": batch, "threads": cpp["threads"], "steps": cpp["steps"],
                          "params": params, "ms_per_step": 1000.0 * seconds / cpp["steps"]}),
              flush=True)


if __name__ == "__main__":
    main()
