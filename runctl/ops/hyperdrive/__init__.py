"""HyperDrive-style tuning (issue 24), as Azure ML v1 defined it: a parameter space of
expressions (space.py), sampled at random, on a grid or by Bayesian optimisation, and
early-termination policies applied to the children's primary metric (policy.py)."""
