#!/usr/bin/env python3
"""A stand-in for nvidia-smi on the test SSH host: answers runctl's two queries from the
gpus.json file beside this script (GPUs and the processes on them)."""

import json
import os
import sys

state = json.loads(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpus.json")).read())
args = " ".join(sys.argv[1:])
if "--query-gpu=" in args:
    for g in state["gpus"]:
        print(f"{g['index']}, {g['uuid']}, {g['name']}, {g.get('used', 0)}, {g.get('total', 81559)}")
elif "--query-compute-apps=" in args:
    for app in state.get("apps", []):
        print(f"{app['uuid']}, {app['pid']}")
else:
    sys.exit(2)
