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

    python benchmarks/unet_step.py                  # ~2-3 minutes on 2 idle CPU cores
    python benchmarks/unet_step.py --sizes 320 --chans 32 --steps 10 --all-variants
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_model  # noqa: E402
from mrtl_core.unet import Unet, count_parameters  # noqa: E402




def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device.type, dtype=dtype)


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
    scaler = torch.amp.GradScaler(device.type, enabled=amp and not torch.cuda.is_bf16_supported())

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
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.machine()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores visible, torch threads {torch.get_num_threads()}")
    if hasattr(os, "getloadavg"):
        # Other processes on the machine slow every variant alike; the ratios are the result.
        print("load average at start (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name(0)} (mixed precision: "
              f"{'bf16' if torch.cuda.is_bf16_supported() else 'fp16 + GradScaler'})")
    else:
        print("CUDA: not available")
    print(f"batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up (median), "
          "L1 loss + Adam, U-Net with 4 pooling levels")
    for chans in args.chans:
        print(f"  chans={chans}: {count_parameters(Unet(1, 1, chans=chans)):,} parameters")
    print()
    header = (f"{'device':6} {'size':>5} {'chans':>5} {'variant':14} {'train s/step':>12} "
              f"{'ms/image':>9} {'infer img/s':>11} {'train x':>8} {'infer x':>8} {'compile s':>9}")
    print(header)
    print("-" * len(header))
    variants = ["eager", "channels_last"] + ([] if args.no_compile else ["compile"])
    first = True
    for dev_name in devices:
        device = torch.device(dev_name)
        amp = device.type == "cuda"
        for size in args.sizes:
            for chans in args.chans:
                run = variants if (args.all_variants or device.type == "cuda" or first) else ["eager"]
                first = False
                base = None
                for variant in run:
                    try:
                        r = bench(device, size, chans, args.batch, variant, args.steps, args.warmup, amp)
                    except Exception as err:  # a peer that fails to build (no compiler) is reported
                        print(f"{dev_name:6} {size:5d} {chans:5d} {variant:14} failed: {type(err).__name__}: {err}")
                        continue
                    base = base or r
                    label = variant + (" +amp" if amp else "")
                    print(f"{dev_name:6} {size:5d} {chans:5d} {label:14} {r['train']:12.3f} "
                          f"{1000 * r['train'] / args.batch:9.1f} {args.batch / r['infer']:11.1f} "
                          f"{base['train'] / r['train']:8.2f} {base['infer'] / r['infer']:8.2f} "
                          f"{r['compile_s']:9.1f}", flush=True)
    print()
    print("train x / infer x: eager time / variant time in this run (> 1: the variant is faster).")
    if hasattr(os, "getloadavg"):
        print("load average at end (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    print("Reference: a prototype measured 0.54 s per batch-8 training step at 128x128, chans=16, "
          "on 2 CPU cores.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
