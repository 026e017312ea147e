"""``python -m parhelia_cli``: the same as the ``parhelia`` console script."""

from parhelia_cli.entry import main

if __name__ == "__main__":
    main()
