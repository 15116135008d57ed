"""``python -m tvilling.cli``: the ``tvilling`` command."""

from tvilling.cli import main

if __name__ == "__main__":
    main()
