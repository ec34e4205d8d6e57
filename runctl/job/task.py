"""runctl's task shim: one process of a job of several. The Slurm backend starts it under
``srun`` once per task (RUN_DIR/.runctl/lib/runctl_task.py); it gives the process the rank
variables torchrun sets (so a DDP script needs no boilerplate) and the ones Azure ML v1
set (for v1 scripts that read them), sends the output of ranks other than 0 to their own
log file, then becomes the job. Stdlib only, Python >= 3.8.

    python3 runctl_task.py [--mpi] -- ARGV...
"""

import os
import re
import socket
import sys

from . import protocol as P

MASTER_PORT_BASE = 15000  # + the job id modulo 20000: two jobs on one node do not collide


def first_host(nodelist):
    """The first host of a Slurm hostlist: "gpu[03-04,07],cpu1" -> "gpu03"."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if m is None:
        return "localhost"
    prefix, ranges = m.group(1), m.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def rank_environment(environ, mpi=False):
    """The variables of one task, from what srun set (SLURM_PROCID, ...)."""
    rank = int(environ.get("SLURM_PROCID", "0"))
    world = int(environ.get("SLURM_NTASKS", "1"))
    local = int(environ.get("SLURM_LOCALID", "0"))
    node = int(environ.get("SLURM_NODEID", "0"))
    nodes = int(environ.get("SLURM_NNODES") or environ.get("SLURM_JOB_NUM_NODES") or "1")
    per_node = max(1, world // max(1, nodes))
    master = first_host(environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or "localhost")
    port = environ.get("MASTER_PORT") or str(MASTER_PORT_BASE + int(environ.get("SLURM_JOB_ID") or 0) % 20000)
    try:
        master_ip = socket.gethostbyname(master)
    except OSError:
        master_ip = master
    env = {
        "RANK": str(rank), "LOCAL_RANK": str(local), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(per_node),
        "NODE_RANK": str(node), "GROUP_RANK": str(node), "MASTER_ADDR": master, "MASTER_PORT": port,
        # Azure ML v1's names (reference/azureml-v1.md, "distributed"):
        "AZ_BATCH_MASTER_NODE": f"{master}:{port}", "AZ_BATCHAI_JOB_MASTER_NODE_IP": master_ip,
        "AZ_BATCH_IS_CURRENT_NODE_MASTER": "true" if node == 0 else "false",
        "AZ_BATCHAI_TASK_INDEX": str(local), "AZUREML_NODE_COUNT": str(nodes),
        P.TASK_RANK: str(rank),
    }
    if mpi:  # what Open MPI's mpirun would have set, for `communicator: Mpi` scripts
        env.update({"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(world),
                    "OMPI_COMM_WORLD_LOCAL_RANK": str(local), "OMPI_COMM_WORLD_LOCAL_SIZE": str(per_node)})
    return env


def main(argv):
    mpi = "--mpi" in argv[: argv.index("--")] if "--" in argv else False
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        sys.stderr.write("usage: runctl_task.py [--mpi] -- ARGV...\n")
        return 2
    job = argv[argv.index("--") + 1:]
    env = dict(os.environ)
    env.update(rank_environment(os.environ, mpi))
    if env["RANK"] != "0" and os.environ.get(P.RUN_DIR):
        path = os.path.join(os.environ[P.RUN_DIR], P.LOGS_DIR, "std_log_process_{}.txt".format(env["RANK"]))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        os.execvpe(job[0], job, env)
    except OSError as e:
        sys.stderr.write(f"runctl: cannot start {job[0]!r}: {e}\n")
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
