import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from runctl.backends.sshlink import HostLink

S = Path("/var/lib/runctl-test-ssh")
work = tempfile.mkdtemp()
opts = {"hosts": ["10.231.0.2"], "port": 2222, "user": "root", "identity_file": str(S/"client_ed25519"),
        "known_hosts": str(S/"known_hosts"), "python": "/usr/bin/python3", "work_dir": work}
def once(reinstall):
    link = HostLink("10.231.0.2", opts)
    link.conn  # connect first: measure the agent's start only
    if reinstall:
        shutil.rmtree(os.path.join(work, ".runctl-agent"), ignore_errors=True)
    t0 = time.perf_counter(); link.agent({"op": "info", "work_dir": work}); t = time.perf_counter() - t0
    link.close(); return t
once(False)
for _ in range(2):
    v = [once(False) for _ in range(15)]; s = [once(True) for _ in range(15)]
    print(f"verify copy on host: median {statistics.median(v)*1000:.1f} ms; send+install each time: {statistics.median(s)*1000:.1f} ms")
