"""`python -m loader` runs the flowkit-loader command."""

from loader.cli import main

main()
