"""A small MLP regression on CUDA (CPU if none), logging like an Azure ML v1 script.

Also times the same loop with and without run.log() to show what logging costs a real
training step (both call loss.item(), so both synchronise the GPU the same way)."""

import argparse
import time

import torch
from azureml.core import Run

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
args = parser.parse_args()

run = Run.get_context()
dev = "cuda" if torch.cuda.is_available() else "cpu"
run.tag("device", torch.cuda.get_device_name(0) if dev == "cuda" else "cpu")
run.tag("torch", torch.__version__)
print("device:", run.tags["device"], flush=True)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(1024, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 1)).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x = torch.randn(4096, 1024, device=dev)
y = x[:, :8].sum(1, keepdim=True)


def step():
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss


for _ in range(20):
    step()
timings = {}
for mode in ("without_log", "with_log"):
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(args.steps):
        value = step().item()
        if mode == "with_log":
            run.log("loss", value, step=i)
    timings[mode] = (time.perf_counter() - t0) / args.steps * 1e6
    print(f"{mode}: {timings[mode]:.1f} us/step", flush=True)
run.log("step_us_without_log", timings["without_log"])
run.log("step_us_with_log", timings["with_log"])
if dev == "cuda":
    run.log("max_memory_mb", torch.cuda.max_memory_allocated() / 2**20)
torch.save(model.state_dict(), "outputs/model.pt")
