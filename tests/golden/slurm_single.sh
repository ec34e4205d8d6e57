#!/bin/sh
#SBATCH --job-name=exp_1_abcd
#SBATCH --chdir='/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd'
#SBATCH --output='/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd/logs/slurm-%j.txt'
#SBATCH --open-mode=append
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=63

umask 077  # the run's files are private to its user (logs can hold secrets)
exec /opt/conda/bin/python '/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd/.runctl/launcher.py' '/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd'
