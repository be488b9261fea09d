"""`sweep launch slurm|k8s` (registered on the main app by sweep/cli.py)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
