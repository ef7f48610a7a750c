"""Cuts N ImageNet-sized JPEGs (about 500x375, quality 90) out of the photographs that Debian's
python3-skimage ships, as an image folder <out>/train/<class>/<n>.jpg with one class per source
photograph (9). Each image is a random crop of its photograph (30-100% of the side),
resized to 500x375 or 375x500, maybe mirrored: real photo texture at the size and quality
ImageNet's training JPEGs have. Deterministic for a seed. No download.

    /usr/bin/python3 bench/data/make_images.py OUT [--count 10000] [--workers 2]
"""
import argparse
import os
import random
from multiprocessing import Pool

from PIL import Image

SKIMAGE_DATA = "/usr/lib/python3/dist-packages/skimage/data"
# The colour photographs among them (grass, gravel and brick are gray and stay out).
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png"]


def sources():
    found = [p for p in PHOTOS if os.path.exists(os.path.join(SKIMAGE_DATA, p))]
    if len(found) < 4:
        raise SystemExit(f"make_images: too few sample photographs in {SKIMAGE_DATA} "
                         "(install python3-skimage)")
    return found


def make(args):
    out, index, names = args
    rng = random.Random(index * 7919 + 17)
    cls = index % len(names)
    photo = Image.open(os.path.join(SKIMAGE_DATA, names[cls])).convert("RGB")
    w, h = photo.size
    side = rng.uniform(0.3, 1.0)
    cw, ch = max(16, int(w * side)), max(16, int(h * side * rng.uniform(0.8, 1.0)))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    size = (500, 375) if rng.random() < 0.75 else (375, 500)
    image = photo.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    folder = os.path.join(out, "train", f"class{cls}")
    os.makedirs(folder, exist_ok=True)
    image.save(os.path.join(folder, f"{index:06d}.jpg"), quality=90)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    a = parser.parse_args()
    names = sources()
    with Pool(a.workers) as pool:
        pool.map(make, [(a.out, i, names) for i in range(a.count)], chunksize=64)


if __name__ == "__main__":
    main()
