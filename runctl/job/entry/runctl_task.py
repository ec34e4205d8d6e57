"""RUN_DIR/.runctl/lib/runctl_task.py: what ``srun`` starts once per task of a multi-task
Slurm job (runctl_job.task gives the process its rank variables, then becomes the job).
Python puts this file's folder, lib/, first on sys.path, so runctl_job is found beside it."""

import sys

from runctl_job.task import main

sys.exit(main(sys.argv[1:]))
