#!/usr/bin/env python3
"""A stand-in for nvidia-smi: answers the queries runctl makes from the gpus.json file beside
this script (GPUs, their use and the processes on them); ``--loop-ms=N`` answers again every
N ms until killed, as the real one does."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
args = " ".join(sys.argv[1:])
FIELDS = {"index": "index", "uuid": "uuid", "name": "name", "memory.used": "used", "memory.total": "total",
          "utilization.gpu": "util", "driver_version": "driver"}
DEFAULTS = {"used": 0, "total": 81559, "util": 0, "driver": "550.54.15"}


def state():
    with open(os.path.join(HERE, "gpus.json")) as f:
        return json.load(f)


def answer():
    if "--query-gpu=" in args:
        wanted = args.split("--query-gpu=")[1].split()[0].split(",")
        for g in state()["gpus"]:
            print(", ".join(str(g.get(FIELDS[w], DEFAULTS.get(FIELDS[w], ""))) for w in wanted))
    elif "--query-compute-apps=" in args:
        for app in state().get("apps", []):
            print(f"{app['uuid']}, {app['pid']}")
    elif not sys.argv[1:]:  # the summary table's head, as the real one prints it
        print("| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |")
    else:
        sys.exit(2)
    sys.stdout.flush()


loop = [a for a in sys.argv[1:] if a.startswith("--loop-ms=")]
answer()
while loop:
    time.sleep(int(loop[0].split("=")[1]) / 1000)
    answer()
