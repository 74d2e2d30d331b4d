"""Training throughput of the study's six U-Nets on one GPU, with PyTorch alone (no
TensorFlow, no unetcap install: it runs on a GPU node that has torch, and
segmentation_models_pytorch with timm, carried as wheels if need be).

    python benchmarks/gpu_throughput.py --out gpu_steps.csv            # on the GPU node
    python benchmarks/gpu_throughput.py --device cpu --sizes 32 --steps 2 --warmup 1 \
        --encoders resnet18 --processes 1 2 --out /tmp/steps.csv       # a check on a CPU

Side by side in one run, per encoder (the models of `unetcap.train.pytorch`: smp's U-Net,
one input channel, from scratch, segmentation-models' EfficientNet features), at each image
size (128 and 256 px), batch 8 (the paper's), Adam, BCE + the L2 penalty:
- the median seconds of a training step and of a prediction per image, float32 against
  bfloat16 autocast (`mixed_bfloat16`, config train.precision's name), each with the
  default memory format and channels-last;
- 1, 2 and 4 training processes sharing the GPU (float32, 256 px): the median step of each.

Writes one CSV row per measurement: backbone, image_size, batch_size, precision,
channels_last, concurrency, seconds_per_step, images_per_second, predict_seconds_per_image,
device. `benchmarks/plan.py --steps-table` reads it (the rows of the config's precision,
without channels-last). Each measurement takes `--warmup` steps (cuDNN's autotuner, the
allocator) before `--steps` timed ones, with the GPU synchronised around each.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENCODERS_FILE = HERE.parent / "src/unetcap/train/pytorch_encoders.py"
COLUMNS = [
    "backbone",
    "image_size",
    "batch_size",
    "precision",
    "channels_last",
    "concurrency",
    "seconds_per_step",
    "images_per_second",
    "predict_seconds_per_image",
    "device",
]
REG = 1e-4  # an L2 strength of the paper's grid: the penalty's cost is in every step


def unetcap_encoders():
    """unetcap's src/unetcap/train/pytorch_encoders.py, loaded from its file: it needs torch
    and smp alone, not the unetcap package (its ENCODERS: the study's backbone -> smp's
    encoder; its import_smp: smp with unetcap's encoders registered)."""
    spec = importlib.util.spec_from_file_location("unetcap_pytorch_encoders", ENCODERS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENCODERS = unetcap_encoders().ENCODERS


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measure(smp, backbone: str, size: int, batch: int, precision: str, channels_last: bool, args) -> dict:
    """Median step and prediction of one setting in this process."""
    import torch
    import torch.nn.functional as F

    device = args.device
    torch.manual_seed(1)
    model = smp.Unet(ENCODERS[backbone], encoder_weights=None, in_channels=1, classes=1).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    kernels = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    x = torch.rand(batch, 1, size, size, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()
    dtype = torch.bfloat16 if precision == "mixed_bfloat16" else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y) + REG * sum((w * w).sum() for w in kernels)
        loss.backward()
        optimizer.step()

    def predict():
        with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            model(x)

    model.train()
    steps = timed(step, device, args)
    model.eval()
    predictions = timed(predict, device, args)
    return {
        "backbone": backbone,
        "image_size": size,
        "batch_size": batch,
        "precision": precision,
        "channels_last": channels_last,
        "seconds_per_step": steps,
        "images_per_second": batch / steps,
        "predict_seconds_per_image": predictions / batch,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "CPU",
    }


def timed(fn, device: str, args) -> float:
    for _ in range(args.warmup):
        fn()
    times = []
    for _ in range(args.steps):
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def worker(spec: dict) -> None:
    """One process: every setting of `spec` for one encoder (one CUDA start), printed as JSON
    lines. With `start_at`, waits until then so that k processes time their steps together."""
    import torch

    args = argparse.Namespace(**spec["args"])
    torch.backends.cudnn.benchmark = True
    smp = unetcap_encoders().import_smp()
    if "start_at" in spec:
        time.sleep(max(0.0, spec["start_at"] - time.time()))
    for size, precision, channels_last in spec["settings"]:
        row = measure(smp, spec["backbone"], size, args.batch, precision, channels_last, args)
        print(json.dumps({**row, "concurrency": spec.get("concurrency", 1)}), flush=True)


def launch(spec: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=os.environ
    )


def collect(process: subprocess.Popen, what: str) -> list[dict]:
    out, _ = process.communicate()
    if process.returncode:
        sys.exit(f"{what} failed (exit {process.returncode})")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def shared(backbone: str, k: int, args) -> dict:
    """k processes training the same encoder at once: the mean of their median steps."""
    size = max(args.sizes)
    start_at = time.time() + args.start_delay
    spec = {"backbone": backbone, "settings": [(size, "float32", False)], "args": vars(args), "concurrency": k}
    processes = [launch({**spec, "start_at": start_at}) for _ in range(k)]
    rows = [row for p in processes for row in collect(p, f"{backbone}: {k} processes")]
    step = statistics.mean(r["seconds_per_step"] for r in rows)
    per_image = statistics.mean(r["predict_seconds_per_image"] for r in rows)
    return {
        **rows[0],
        "seconds_per_step": step,
        "images_per_second": k * args.batch / step,
        "predict_seconds_per_image": per_image,
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        worker(json.loads(argv[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the CSV to write")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--start-delay", type=float, default=20.0, help="seconds for k processes to start up")
    args = parser.parse_args(argv)
    settings = [(s, p, c) for s in args.sizes for p in ("float32", "mixed_bfloat16") for c in (False, True)]
    rows = []
    for backbone in args.encoders:
        mine = collect(launch({"backbone": backbone, "settings": settings, "args": vars(args)}), backbone)
        mine += [shared(backbone, k, args) for k in args.processes if k > 1]
        rows += mine
        for row in mine:
            print(
                f"{row['backbone']:15s} {row['image_size']:4d} px {row['precision']:14s} "
                f"channels-last {row['channels_last']!s:5s} x{row['concurrency']}: "
                f"{1000 * row['seconds_per_step']:8.2f} ms/step, {row['images_per_second']:8.1f} images/s",
                flush=True,
            )
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
