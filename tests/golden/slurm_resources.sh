#!/bin/sh
#SBATCH --job-name=exp_1_abcd
#SBATCH --chdir='/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd'
#SBATCH --output='/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd/logs/slurm-%j.txt'
#SBATCH --open-mode=append
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --mem=65536M
#SBATCH --gpus-per-node=4
#SBATCH --time=63
#SBATCH --partition=gpu
#SBATCH --account='my project'
#SBATCH --qos=high
#SBATCH --constraint=a100

umask 077  # the run's files are private to its user (logs can hold secrets)
exec /opt/conda/bin/python '/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd/.runctl/launcher.py' '/scratch/it'"'"'s a "dir" with $HOME/exp_1_abcd'
