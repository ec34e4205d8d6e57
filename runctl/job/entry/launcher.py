"""RUN_DIR/.runctl/launcher.py: what every backend starts. It puts lib/ beside it, which holds
the job-side package runctl_job, first on sys.path and runs the launcher from it."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from runctl_job.launcher import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
