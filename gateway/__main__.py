"""`python -m gateway` is the `lockgate` command."""

from gateway.cli import main

main()
