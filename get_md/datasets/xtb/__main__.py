"""``python -m get_md.datasets.xtb``: see :func:`get_md.datasets.xtb.cli.main`."""

from get_md.datasets.xtb.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
