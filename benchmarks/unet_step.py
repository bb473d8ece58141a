"""U-Net training-step time and inference throughput, with peers measured in the same run.

For each device (CPU with ``--threads`` threads; CUDA with mixed precision when present), image
size and width ``chans`` it times, at batch ``--batch``:

* a training step: forward, L1 loss, backward, Adam update (median over ``--steps`` steps after
  ``--warmup`` untimed ones),
* inference: a forward pass under ``torch.no_grad`` in eval mode, reported as images/s.

Peers: the eager fp32 NCHW model is the baseline; ``channels_last`` memory format and
``torch.compile`` are timed on the same data in the same process and reported as ratios
(baseline time / variant time, so > 1 means the variant is faster). On the CPU the peers run at
the first size/width only (compilation costs tens of seconds there); ``--all-variants`` runs
them everywhere. ``torch.compile``'s first call (compilation) is reported separately.

**The limit.** Each CPU row also prints the step's FLOPs and the fraction of the machine's peak it
reaches. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward +
backward of the batch: it counts the convolutions (and matmuls), 2 FLOPs per multiply-add, forward
and both backward products; InstanceNorm, LeakyReLU, the loss and Adam are element-wise and not
counted (they are memory-bound, not FLOP-bound). The peak is a float32 2048 x 2048 GEMM
(``torch.matmul``) at the row's thread count, timed in the same process (``machine.matmul_peak``).
``% peak`` = FLOPs / step time / peak.

**Threads under load** (``--loaded``): the standard step (128 x 128, chans 16) timed in fresh
interpreters with 1 and 2 torch threads, ``OMP_WAIT_POLICY`` unset and ``PASSIVE`` (it must be set
before torch loads), on the machine as it is and with one core kept busy by a Python busy loop this
script starts (``machine.busy_cores``) -- a student's laptop with a browser or a second notebook.

    python benchmarks/unet_step.py                  # ~2-3 minutes on 2 idle CPU cores
    python benchmarks/unet_step.py --loaded         # + the thread rows (~2 more minutes)
    python benchmarks/unet_step.py --sizes 320 --chans 32 --steps 10 --all-variants
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_model, load, matmul_peak, thread_rows  # noqa: E402
from mrtl_core.precision import choose, cpu_has_native_bf16  # noqa: E402
from mrtl_core.unet import Unet, count_parameters  # noqa: E402




def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: bool | str):
    """The library's choice for this device and request (``mrtl_core.precision.choose``)."""
    prec = choose(amp, device)
    return torch.autocast(device.type, dtype=prec.dtype) if prec.autocast else contextlib.nullcontext()


def step_flops(size: int, chans: int, batch: int) -> float:
    """FLOPs of one forward + backward (FlopCounterMode: convolutions/matmuls, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = Unet(1, 1, chans=chans, num_pool_layers=4)
    x, y = torch.randn(batch, 1, size, size), torch.randn(batch, 1, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        F.l1_loss(model(x), y).backward()
    return float(counter.get_total_flops())


def bench(device, size, chans, batch, variant, steps, warmup, amp) -> dict:
    """Time one configuration; returns seconds per train step, images/s and compile seconds."""
    torch.manual_seed(0)
    model = Unet(1, 1, chans=chans, num_pool_layers=4).to(device)
    x = torch.randn(batch, 1, size, size, device=device)
    y = torch.randn(batch, 1, size, size, device=device)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if variant == "compile" else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=choose(amp, device).scaler)

    def train_step():
        opt.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            loss = F.l1_loss(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def infer():
        with torch.no_grad(), _autocast(device, amp):
            net(x)

    result = {"compile_s": 0.0}
    for name, fn in (("train", train_step), ("infer", infer)):
        model.train(name == "train")
        t0 = time.perf_counter()
        for _ in range(max(warmup, 1 if variant == "compile" else 0)):
            fn()
        _sync(device)
        if variant == "compile":
            result["compile_s"] += time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        result[name] = statistics.median(times)
    return result


def loaded_rows(args, flops: float) -> None:
    """The thread grid of the standard step (128 x 128, chans 16), each row a fresh interpreter."""
    threads = sorted({1, os.cpu_count() or 1})
    print()
    print(f"Threads under load: 128 x 128, chans 16, batch {args.batch}, eager float32, median of 5 steps "
          "after 1 warm-up, each row a fresh interpreter")
    print(f"busy = cores kept busy by a Python busy loop this script runs; load = 1-min load average before the row")
    header = f"{'busy':>4} {'OMP_WAIT_POLICY':>15} {'threads':>7} {'load':>5} | {'train s/step':>12} {'GFLOP/s':>8} {'vs 1 thread':>11}"
    print(header)
    print("-" * len(header))
    rows = thread_rows(Path(__file__), ["--child", "--sizes", "128", "--chans", "16", "--batch", str(args.batch),
                                        "--steps", "5", "--warmup", "1"], threads)
    one = {(r["busy"], r["policy"]): r["train"] for r in rows if r["threads"] == 1}
    for r in rows:
        print(f"{r['busy']:>4} {r['policy']:>15} {r['threads']:>7} {r['load']:>5} | {r['train']:12.3f} "
              f"{flops / r['train'] / 1e9:8.1f} {one[r['busy'], r['policy']] / r['train']:10.2f}x", flush=True)
    print("vs 1 thread: the 1-thread time of the same (busy, policy) / this row's (> 1: more threads help).")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--chans", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda if available")
    parser.add_argument("--all-variants", action="store_true", help="time the peers at every size/width")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    parser.add_argument("--loaded", action="store_true",
                        help="also time the standard step in child processes: 1/2 threads x OMP_WAIT_POLICY x busy core")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one JSON row (thread grid)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.child:
        r = bench(torch.device("cpu"), args.sizes[0], args.chans[0], args.batch, "eager", args.steps,
                  args.warmup, False)
        print(json.dumps({"train": r["train"], "omp": os.environ.get("OMP_WAIT_POLICY", "")}))
        return 0
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.machine()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores visible, torch threads {torch.get_num_threads()}")
    # Other processes on the machine slow every variant alike; the ratios are the result.
    print(f"load average at start (1 min): {load()}")
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name(0)} (mixed precision: "
              f"{'bf16' if torch.cuda.is_bf16_supported() else 'fp16 + GradScaler'})")
    else:
        print("CUDA: not available")
    print(f"CPU native bf16 (AMX/AVX512-BF16): {'yes: a bf16-autocast peer is timed' if cpu_has_native_bf16() else 'no: float32 only'}")
    print(f"batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up (median), "
          "L1 loss + Adam, U-Net with 4 pooling levels")
    peak = matmul_peak(args.threads)
    print(f"the limit: float32 GEMM peak (2048^3 torch.matmul, {args.threads} threads) = {peak / 1e9:.1f} GFLOP/s; "
          "GFLOP/step = convolution FLOPs of forward + backward (FlopCounterMode)")
    for chans in args.chans:
        print(f"  chans={chans}: {count_parameters(Unet(1, 1, chans=chans)):,} parameters")
    print()
    header = (f"{'device':6} {'size':>5} {'chans':>5} {'variant':14} {'train s/step':>12} "
              f"{'ms/image':>9} {'infer img/s':>11} {'train x':>8} {'infer x':>8} {'compile s':>9} "
              f"{'GFLOP/step':>10} {'% peak':>7}")
    print(header)
    print("-" * len(header))
    variants = ["eager", "channels_last"] + ([] if args.no_compile else ["compile"])
    first = True
    flops = {}
    for dev_name in devices:
        device = torch.device(dev_name)
        cpu_bf16 = device.type == "cpu" and cpu_has_native_bf16()
        for size in args.sizes:
            for chans in args.chans:
                run = variants if (args.all_variants or device.type == "cuda" or first) else ["eager"]
                run = run + (["bf16"] if cpu_bf16 else [])   # a peer of the same step under bf16 autocast
                first = False
                base = None
                for variant in run:
                    amp = "bf16" if variant == "bf16" else device.type == "cuda"
                    try:
                        r = bench(device, size, chans, args.batch, "eager" if variant == "bf16" else variant,
                                  args.steps, args.warmup, amp)
                    except Exception as err:  # a peer that fails to build (no compiler) is reported
                        print(f"{dev_name:6} {size:5d} {chans:5d} {variant:14} failed: {type(err).__name__}: {err}")
                        continue
                    base = base or r
                    label = variant + (" +amp" if amp is True else "")
                    if (size, chans) not in flops:
                        flops[size, chans] = step_flops(size, chans, args.batch)
                    gflop = flops[size, chans] / 1e9
                    frac = (f"{100 * flops[size, chans] / r['train'] / peak:6.1f}%"
                            if device.type == "cpu" else f"{'-':>7}")
                    print(f"{dev_name:6} {size:5d} {chans:5d} {label:14} {r['train']:12.3f} "
                          f"{1000 * r['train'] / args.batch:9.1f} {args.batch / r['infer']:11.1f} "
                          f"{base['train'] / r['train']:8.2f} {base['infer'] / r['infer']:8.2f} "
                          f"{r['compile_s']:9.1f} {gflop:10.1f} {frac}", flush=True)
    print()
    print("train x / infer x: eager time / variant time in this run (> 1: the variant is faster).")
    print("% peak: the step's counted FLOPs / its time / the GEMM peak above (element-wise work not counted).")
    if args.loaded:
        loaded_rows(args, flops.get((128, 16)) or step_flops(128, 16, args.batch))
    print(f"load average at end (1 min): {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
