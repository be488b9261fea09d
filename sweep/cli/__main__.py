"""`python -m sweep.cli`: what `sweep run --workers N` starts its worker processes with."""

from sweep.cli import main

main()
