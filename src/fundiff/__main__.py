"""``python -m fundiff`` (and ``torchrun ... -m fundiff train ...``): the command line."""

from fundiff.cli.app import main

main()
