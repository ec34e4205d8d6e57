"""Configuration: reading what the user wrote. The job file (jobconfig, with v1's
``.runconfig`` files in v1config), its JSON Schema check with file:line errors (schemacheck,
yamlpos), resources (cpus, memory, gpus) and the workspace (``.runctl/config.yaml``: where the
store lives, which compute targets exist)."""
