"""``azureml.train``: runctl stands in for its ``hyperdrive`` module only."""
