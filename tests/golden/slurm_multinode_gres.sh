#!/bin/sh
#SBATCH --job-name=exp_1_abcd
#SBATCH --chdir='/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd'
#SBATCH --output='/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd/logs/slurm-%j.txt'
#SBATCH --open-mode=append
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:4
#SBATCH --time=63

umask 077  # the run's files are private to its user (logs can hold secrets)
RUNCTL_TASK_LAUNCH='["srun", "--kill-on-bad-exit=1", "--ntasks-per-node", "4", "/opt/conda/bin/python", "/scratch/it'"'"'s a \"dir\" with $HOME/exp_1_abcd/.runctl/lib/runctl_task.py", "--"]'; export RUNCTL_TASK_LAUNCH
RUNCTL_METRICS_RANKS=all; export RUNCTL_METRICS_RANKS
exec /opt/conda/bin/python '/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd/.runctl/launcher.py' '/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd'
