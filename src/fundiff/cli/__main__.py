"""``python -m fundiff.cli``: the command line."""

from fundiff.cli.app import main

main()
