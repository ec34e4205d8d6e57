"""A v1-style training loop (stdlib only): fit y = 3x + 1 by gradient descent, log each epoch."""

import argparse
import json
import os
import random

from azureml.core import Run

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()

run = Run.get_context()
rng = random.Random(0)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.01)) for x in (rng.uniform(-1, 1) for _ in range(200))]
train, val = data[:160], data[160:]
w, b = 0.0, 0.0

for epoch in range(args.epochs):
    for x, y in train:
        err = (w * x + b) - y
        w -= args.lr * err * x
        b -= args.lr * err
    val_mse = sum(((w * x + b) - y) ** 2 for x, y in val) / len(val)
    run.log("validation", val_mse)
    print(f"epoch {epoch}: validation mse {val_mse:.6f}")

run.log("final_w", w)
run.log("final_b", b)
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.json", "w") as f:
    json.dump({"w": w, "b": b}, f)
