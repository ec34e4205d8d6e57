"""`python -m runctl`: the same as the `runctl` command."""

from runctl.cli import main

main()
