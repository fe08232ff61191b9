"""The cases of benches/cnn.rs in PyTorch (eager, its oneDNN/native CPU
kernels) and JAX (jit), float32, one thread: LeNet-5 training step at batch
64, and forward + backward of a 3x3 convolution 64->64 (32x32, batch 32), a
depthwise 3x3 (64 channels, 56x56, batch 8), BatchNorm2d and MaxPool2d 2x2 on
(32, 64, 32, 32). Prints milliseconds per iteration (the median of timed
runs, as criterion's estimate is), one line per case and library. Each
step returns the forward's output with the gradients, in every library.

Set up once, outside the repository (never needed by cargo test):
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch jax numpy
Run on one core, in the same session as the Rust bench:
    taskset -c 0 cargo bench --bench cnn -- --noplot
    taskset -c 0 /tmp/peers/bin/python benches/peers/cnn.py
Held to AVX2 on a CPU with AVX-512, both sides:
    NDLAYERS_SIMD=avx2 taskset -c 0 cargo bench --no-default-features --bench cnn -- --noplot
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
        MKL_ENABLE_INSTRUCTIONS=AVX2 taskset -c 0 /tmp/peers/bin/python benches/peers/cnn.py
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
).strip()

import statistics
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
try:
    import jax
    import jax.numpy as jnp
except ImportError:
    jax = None


def median_ms(step, seconds=3.0):
    for _ in range(5):
        step()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            step()
        if time.perf_counter() - t > 0.2:
            break
        n *= 2
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(n):
            step()
        times.append((time.perf_counter() - t) / n)
    return 1e3 * statistics.median(times)


def images(shape):
    n, c, h, w = np.indices(shape)
    return (((n * 7 + c * 5 + h * 3 + w) % 17) / 8.0 - 1.0).astype(np.float32)


def torch_layer(name, module, shape):
    x = torch.tensor(images(shape), requires_grad=True)
    g = torch.ones_like(module(x))

    def step():
        x.grad = None
        module(x).backward(g)

    print(f"{name} torch {median_ms(step):.3f}", flush=True)


def torch_lenet():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(256, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10),
    )
    sgd = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.tensor(images((64, 1, 28, 28)))
    labels = torch.arange(64) % 10

    def step():
        sgd.zero_grad()
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        sgd.step()

    print(f"lenet5_step_batch64 torch {median_ms(step):.3f}", flush=True)


def jax_cases():
    dn = ("NCHW", "OIHW", "NCHW")

    def conv(x, w, padding, groups=1):
        return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=dn, feature_group_count=groups)

    def layer(name, f, params, shape):
        x = jnp.asarray(images(shape))
        y, vjp = jax.vjp(f, params, x)
        g = jnp.ones_like(y)

        # The output is returned with the gradients: a forward whose output
        # nobody reads would be dropped by XLA (it timed only the backward's
        # work before), while PyTorch and ndlayers write it.
        @jax.jit
        def step(params, x):
            y, vjp = jax.vjp(f, params, x)
            return y, vjp(g)

        print(f"{name} jax {median_ms(lambda: jax.block_until_ready(step(params, x))):.3f}", flush=True)

    key = jax.random.PRNGKey(0)
    layer("conv3x3_64to64_32x32_batch32", lambda w, x: conv(x, w, [(1, 1), (1, 1)]),
          jax.random.uniform(key, (64, 64, 3, 3)) * 0.04, (32, 64, 32, 32))
    layer("depthwise3x3_64ch_56x56_batch8", lambda w, x: conv(x, w, [(1, 1), (1, 1)], 64),
          jax.random.uniform(key, (64, 1, 3, 3)) * 0.3, (8, 64, 56, 56))

    def batchnorm(p, x):
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        return (x - mean) / jnp.sqrt(var + 1e-5) * p[0][None, :, None, None] + p[1][None, :, None, None]

    layer("batchnorm2d_32x64x32x32", batchnorm, (jnp.ones(64), jnp.zeros(64)), (32, 64, 32, 32))

    def maxpool(_, x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    layer("maxpool2x2_32x64x32x32", maxpool, jnp.zeros(()), (32, 64, 32, 32))

    def lenet(params, x, labels):
        w1, b1, w2, b2, w3, b3, w4, b4, w5, b5 = params
        h = jax.nn.relu(conv(x, w1, "VALID") + b1[None, :, None, None])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jax.nn.relu(conv(h, w2, "VALID") + b2[None, :, None, None])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ w3 + b3)
        h = jax.nn.relu(h @ w4 + b4)
        logits = h @ w5 + b5
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    shapes = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (256, 120), (120,), (120, 84), (84,), (84, 10), (10,)]
    params = [jax.random.uniform(jax.random.PRNGKey(i), s) * 0.1 for i, s in enumerate(shapes)]
    x = jnp.asarray(images((64, 1, 28, 28)))
    labels = jnp.arange(64) % 10

    @jax.jit
    def train(params):
        grads = jax.grad(lenet)(params, x, labels)
        return [p - 0.01 * g for p, g in zip(params, grads)]

    state = {"p": params}

    def step():
        state["p"] = jax.block_until_ready(train(state["p"]))

    print(f"lenet5_step_batch64 jax {median_ms(step):.3f}", flush=True)


print(f"# torch {torch.__version__}, jax {jax.__version__ if jax else 'not installed'}; {sys.platform}")
torch_lenet()
conv = torch.nn.Conv2d(64, 64, 3, padding=1)
torch_layer("conv3x3_64to64_32x32_batch32", conv, (32, 64, 32, 32))
torch_layer("depthwise3x3_64ch_56x56_batch8", torch.nn.Conv2d(64, 64, 3, padding=1, groups=64), (8, 64, 56, 56))
torch_layer("batchnorm2d_32x64x32x32", torch.nn.BatchNorm2d(64), (32, 64, 32, 32))
torch_layer("maxpool2x2_32x64x32x32", torch.nn.MaxPool2d(2), (32, 64, 32, 32))
if jax:
    jax_cases()
