"""``python -m cytogate`` runs the command-line interface."""

from cytogate.cli import main

main()
