"""A training script with a known optimum, for tuning: the "accuracy" it logs each epoch
climbs towards 1 - (x - 0.3)^2 - (y - 0.7)^2, which is best at x = 0.3, y = 0.7."""

import argparse
import time

from azureml.core import Run

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--y", type=float, default=0.0)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--sleep", type=float, default=0.2)
args = parser.parse_args()

run = Run.get_context()
target = 1 - (args.x - 0.3) ** 2 - (args.y - 0.7) ** 2
for epoch in range(args.epochs):
    run.log("accuracy", target * (1 - 0.5 ** (epoch + 1)))
    time.sleep(args.sleep)
print(f"x={args.x} y={args.y} accuracy={target:.4f}")
