"""Prints a greeting and logs one metric, exactly as an Azure ML v1 script would."""

import argparse
import os

from azureml.core import Run

parser = argparse.ArgumentParser()
parser.add_argument("--greeting", default="Hello")
args = parser.parse_args()

run = Run.get_context()
print(f"{args.greeting} from run {run.id}")
run.log("answer", 42)

os.makedirs("outputs", exist_ok=True)
with open("outputs/greeting.txt", "w") as f:
    f.write(args.greeting + "\n")
