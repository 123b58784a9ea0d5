"""``python -m maildesk``: the same command line as the ``maildesk`` script."""

from maildesk.cli import main

main(prog_name="maildesk")
