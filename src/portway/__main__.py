"""`python -m portway` runs the CLI."""

from portway.cli import main

main()
