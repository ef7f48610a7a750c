#!/usr/bin/python3
"""Reference forward passes of the released models, in numpy (float64), for weights_test.

Written from the released code's definitions, not from vitscale's: the paper's ViT and R50+ViT
hybrid (vit_jax: models_vit.py, models_resnet.py; flax defaults for padding, GELU and epsilons)
and BiT's ResNet-v2 (big_transfer's bit_pytorch models.py, which loads the released .npz files).
Arrays are NHWC and kernels HWIO, as the released code has them.

    released_reference.py FAMILY OUT_DIR [--conventions released|vitscale] [--key value ...]

draws random weights in the released .npz layout and random images, runs the model, and writes
OUT_DIR/weights.npz, OUT_DIR/images.npy (N, 3, H, W float32, vitscale's layout) and
OUT_DIR/logits.npy (N, classes float32, computed in float64). `--conventions vitscale` runs the same architecture the
way vitscale's own models compute (symmetric padding, exact GELU, vitscale's epsilons).
"""

import argparse
import math

import numpy as np

# ---------------------------------------------------------------------------------------------
# Operations, NHWC.


def pad_same(size, kernel, stride):
    """TensorFlow's SAME padding of one side: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad(x, pads_h, pads_w, value=0.0):
    return np.pad(x, ((0, 0), pads_h, pads_w, (0, 0)), constant_values=value)


def conv(x, kernel, stride, padding):
    """x (N, H, W, C), kernel (kh, kw, C, O); padding 'same', 'symmetric' or 'valid'."""
    kh, kw = kernel.shape[:2]
    if padding == 'same':
        x = pad(x, pad_same(x.shape[1], kh, stride), pad_same(x.shape[2], kw, stride))
    elif padding == 'symmetric':
        x = pad(x, (kh // 2, kh // 2), (kw // 2, kw // 2))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # (N, H', W', C, kh, kw)
    return np.einsum('nhwcij,ijco->nhwo', windows, kernel)


def max_pool_3x3_s2(x, pads_h, pads_w, value):
    x = pad(x, pads_h, pads_w, value)
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]
    return windows.max(axis=(-2, -1))


def group_norm(x, scale, bias, groups, eps):
    n, h, w, c = x.shape
    g = x.reshape(n, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    g = (g - mean) / np.sqrt(var + eps)
    return g.reshape(n, h, w, c) * scale + bias


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def standardize(kernel, form, eps):
    """Weight standardisation of an HWIO kernel per output channel."""
    mean = kernel.mean(axis=(0, 1, 2), keepdims=True)
    if form == 'std':  # vit_jax: w / (std + eps)
        return (kernel - mean) / (kernel.std(axis=(0, 1, 2), keepdims=True) + eps)
    var = kernel.var(axis=(0, 1, 2), keepdims=True)  # bit_pytorch: w / sqrt(var + eps)
    return (kernel - mean) / np.sqrt(var + eps)


_erf = np.vectorize(math.erf)


def gelu(x, approximate):
    if approximate:  # flax's nn.gelu default
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def relu(x):
    return np.maximum(x, 0)


# ---------------------------------------------------------------------------------------------
# Conventions: the released code's, or vitscale's own.

RELEASED_VIT = dict(padding='same', gelu_tanh=True, ws_form='std', ws_eps=1e-5, gn_eps=1e-6,
                    pool_pad='-inf')
RELEASED_BIT = dict(padding='symmetric', gelu_tanh=False, ws_form='variance', ws_eps=1e-10,
                    gn_eps=1e-5, pool_pad='zero')
VITSCALE = dict(padding='symmetric', gelu_tanh=False, ws_form='variance', ws_eps=1e-5,
                gn_eps=1e-5, pool_pad='-inf')


def stem_pool(x, c):
    if c['padding'] == 'same':
        return max_pool_3x3_s2(x, pad_same(x.shape[1], 3, 2), pad_same(x.shape[2], 3, 2), -np.inf)
    return max_pool_3x3_s2(x, (1, 1), (1, 1), 0.0 if c['pool_pad'] == 'zero' else -np.inf)


# ---------------------------------------------------------------------------------------------
# Weights in the released layouts.


def float32(x):
    """x rounded to float32 and held in float64: the file stores float32, the maths is float64."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


class Weights:
    def __init__(self, rng):
        self.rng = rng
        self.arrays = {}

    def add(self, key, values):
        assert key not in self.arrays, key
        self.arrays[key] = float32(values)
        return self.arrays[key]

    def kernel(self, key, shape, fan_in):
        return self.add(key, self.rng.normal(0, 1 / math.sqrt(fan_in), shape))

    def scale(self, key, shape):
        return self.add(key, 1 + 0.2 * self.rng.normal(size=shape))

    def bias(self, key, shape):
        return self.add(key, 0.2 * self.rng.normal(size=shape))


def blocks_of(args):
    return [int(b) for b in args.blocks.split(',')]


# The hybrid's post-activation trunk (vit_jax models_resnet.ResidualUnit, models_vit root).
def hybrid_trunk(x, w, args, c):
    width = args.base_width * args.width_factor
    stem_kernel = 3 if args.small_stem else 7
    k = w.kernel('conv_root/kernel', (stem_kernel, stem_kernel, 3, width), 3 * stem_kernel ** 2)
    x = conv(x, standardize(k, c['ws_form'], c['ws_eps']), 1 if args.small_stem else 2,
             c['padding'])
    x = relu(group_norm(x, w.scale('gn_root/scale', width), w.bias('gn_root/bias', width),
                        args.groups, c['gn_eps']))
    if not args.small_stem:
        x = stem_pool(x, c)

    def std_conv(x, key, kernel, cin, cout, stride):
        k = w.kernel(key, (kernel, kernel, cin, cout), cin * kernel ** 2)
        return conv(x, standardize(k, c['ws_form'], c['ws_eps']), stride, c['padding'])

    def gn(x, prefix, channels):
        return group_norm(x, w.scale(prefix + 'scale', channels), w.bias(prefix + 'bias', channels),
                          args.groups, c['gn_eps'])

    for s, units in enumerate(blocks_of(args)):
        features = width * 2 ** s
        for u in range(units):
            stride = 2 if (u == 0 and s > 0) else 1
            p = f'block{s + 1}/unit{u + 1}/'
            residual = x
            if x.shape[-1] != features * 4 or stride != 1:
                residual = std_conv(x, p + 'conv_proj/kernel', 1, x.shape[-1], features * 4, stride)
                residual = gn(residual, p + 'gn_proj/', features * 4)
            y = relu(gn(std_conv(x, p + 'conv1/kernel', 1, x.shape[-1], features, 1), p + 'gn1/',
                        features))
            y = relu(gn(std_conv(y, p + 'conv2/kernel', 3, features, features, stride), p + 'gn2/',
                        features))
            y = gn(std_conv(y, p + 'conv3/kernel', 1, features, features * 4, 1), p + 'gn3/',
                   features * 4)
            x = relu(residual + y)
    return x


# vit_jax models_vit.VisionTransformer.
def vit(images, w, args, c):
    x = images
    if args.family == 'hybrid':
        x = hybrid_trunk(x, w, args, c)
    d, heads, mlp, p = args.width, args.heads, args.mlp, args.patch
    k = w.kernel('embedding/kernel', (p, p, x.shape[-1], d), p * p * x.shape[-1])
    x = conv(x, k, p, 'valid') + w.bias('embedding/bias', d)
    n, h, ww, _ = x.shape
    x = x.reshape(n, h * ww, d)
    x = np.concatenate([np.tile(w.bias('cls', (1, 1, d)), (n, 1, 1)), x], axis=1)
    x = x + w.bias('Transformer/posembed_input/pos_embedding', (1, x.shape[1], d))
    dh = d // heads
    for i in range(args.depth):
        b = f'Transformer/encoderblock_{i}/'
        a = b + 'MultiHeadDotProductAttention_1/'
        y = layer_norm(x, w.scale(b + 'LayerNorm_0/scale', d), w.bias(b + 'LayerNorm_0/bias', d))

        def project(name):
            kernel = w.kernel(a + name + '/kernel', (d, heads, dh), d)
            return np.einsum('btd,dhk->bthk', y, kernel) + w.bias(a + name + '/bias', (heads, dh))

        q, kk, v = project('query'), project('key'), project('value')
        scores = np.einsum('bqhk,bshk->bhqs', q / math.sqrt(dh), kk)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        o = np.einsum('bhqs,bshk->bqhk', scores, v)
        x = x + np.einsum('bqhk,hkd->bqd', o, w.kernel(a + 'out/kernel', (heads, dh, d), d)) + \
            w.bias(a + 'out/bias', d)
        y = layer_norm(x, w.scale(b + 'LayerNorm_2/scale', d), w.bias(b + 'LayerNorm_2/bias', d))
        m = b + 'MlpBlock_3/'
        y = gelu(y @ w.kernel(m + 'Dense_0/kernel', (d, mlp), d) + w.bias(m + 'Dense_0/bias', mlp),
                 c['gelu_tanh'])
        x = x + y @ w.kernel(m + 'Dense_1/kernel', (mlp, d), mlp) + w.bias(m + 'Dense_1/bias', d)
    x = layer_norm(x, w.scale('Transformer/encoder_norm/scale', d),
                   w.bias('Transformer/encoder_norm/bias', d))[:, 0]
    if args.pre_logits:
        x = np.tanh(x @ w.kernel('pre_logits/kernel', (d, args.pre_logits), d) +
                    w.bias('pre_logits/bias', args.pre_logits))
    return x @ w.kernel('head/kernel', (x.shape[-1], args.classes), x.shape[-1]) + \
        w.bias('head/bias', args.classes)


# big_transfer bit_pytorch models.ResNetV2 with PreActBottleneck, keys as in its load_from.
def bit(images, w, args, c):
    wf = args.width_factor
    width = args.base_width * wf
    stem_kernel = 3 if args.small_stem else 7

    def std_conv(x, key, kernel, cin, cout, stride):
        k = w.kernel(key + '/standardized_conv2d/kernel', (kernel, kernel, cin, cout),
                     cin * kernel ** 2)
        return conv(x, standardize(k, c['ws_form'], c['ws_eps']), stride, 'symmetric')

    def gn(x, prefix):
        ch = x.shape[-1]
        return group_norm(x, w.scale(prefix + 'group_norm/gamma', ch),
                          w.bias(prefix + 'group_norm/beta', ch), args.groups, c['gn_eps'])

    x = std_conv(images, 'resnet/root_block', stem_kernel, 3, width,
                 1 if args.small_stem else 2)
    if not args.small_stem:
        x = stem_pool(x, c)
    for s, units in enumerate(blocks_of(args)):
        mid = width * 2 ** s
        for u in range(units):
            stride = 2 if (u == 0 and s > 0) else 1
            p = f'resnet/block{s + 1}/unit{u + 1:02d}/'
            out = relu(gn(x, p + 'a/'))
            residual = x
            if stride != 1 or x.shape[-1] != mid * 4:
                residual = std_conv(out, p + 'a/proj', 1, x.shape[-1], mid * 4, stride)
            out = std_conv(out, p + 'a', 1, x.shape[-1], mid, 1)
            out = std_conv(relu(gn(out, p + 'b/')), p + 'b', 3, mid, mid, stride)
            out = std_conv(relu(gn(out, p + 'c/')), p + 'c', 1, mid, mid * 4, 1)
            x = out + residual
    x = relu(gn(x, 'resnet/')).mean(axis=(1, 2))
    channels = x.shape[-1]
    head = w.kernel('resnet/head/conv2d/kernel', (1, 1, channels, args.classes), channels)
    return x @ head[0, 0] + w.bias('resnet/head/conv2d/bias', args.classes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('family', choices=['vit', 'hybrid', 'bit'])
    parser.add_argument('out_dir')
    parser.add_argument('--conventions', choices=['released', 'vitscale'], default='released')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--images', type=int, default=2)
    parser.add_argument('--resolution', type=int, default=32)
    parser.add_argument('--classes', type=int, default=5)
    parser.add_argument('--depth', type=int, default=2)
    parser.add_argument('--width', type=int, default=32)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--mlp', type=int, default=64)
    parser.add_argument('--patch', type=int, default=4)
    parser.add_argument('--pre_logits', type=int, default=0)
    parser.add_argument('--blocks', default='1,1,1')
    parser.add_argument('--base_width', type=int, default=16)
    parser.add_argument('--width_factor', type=int, default=1)
    parser.add_argument('--groups', type=int, default=8)
    parser.add_argument('--small_stem', action='store_true')
    args = parser.parse_args()

    if args.conventions == 'vitscale':
        c = VITSCALE
    else:
        c = RELEASED_BIT if args.family == 'bit' else RELEASED_VIT
    rng = np.random.default_rng(args.seed)
    images = float32(rng.normal(size=(args.images, args.resolution, args.resolution, 3)))
    w = Weights(rng)
    logits = bit(images, w, args, c) if args.family == 'bit' else vit(images, w, args, c)
    np.savez(f'{args.out_dir}/weights.npz',
             **{k: v.astype(np.float32) for k, v in w.arrays.items()})
    np.save(f'{args.out_dir}/images.npy', images.transpose(0, 3, 1, 2).astype(np.float32))
    np.save(f'{args.out_dir}/logits.npy', logits.astype(np.float32))


if __name__ == '__main__':
    main()
