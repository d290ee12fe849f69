"""`python -m adapters.cli` runs the `flux` command."""

from adapters.cli.main import cli

cli(prog_name="flux")
