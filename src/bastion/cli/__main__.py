"""`python -m bastion.cli`, the same as the `bastion` console script."""

from . import main

main()
