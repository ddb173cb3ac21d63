"""`python -m cli <command>`: the `akave-gateway` command, as the dev runner starts its children."""

from cli.main import main

main()
