"""`python -m rstrace` runs the command line."""

from rstrace.cli import main

main()
