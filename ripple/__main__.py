"""``python -m ripple`` is the ``ripple`` command."""

from ripple.cli import main

main()
