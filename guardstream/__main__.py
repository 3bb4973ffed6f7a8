"""`python -m guardstream` is the `guardstream` command."""

from guardstream.cli import main

main()
