"""Run the fcp-tune command line from a checkout: ``python cli.py --help``."""

from fcp_tune.cli import main

if __name__ == "__main__":
    main()
