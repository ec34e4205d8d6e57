"""The notebook flow from Azure ML v1, cell by cell, against runctl's store:
an interactive run (exp.start_logging) that logs the sine curve row by row."""

import numpy as np

from runctl import Experiment, Workspace

ws = Workspace.from_config()
exp = Experiment(ws, "example")
run = exp.start_logging(snapshot_directory=None)
print(run.get_portal_url())
for x in np.linspace(0, 10):
    run.log_row("sine", x=x, y=np.sin(x))
run.complete()
print(run.id, run.get_status())
