"""``python -m fcp_tune`` runs the command line."""

from fcp_tune.cli import main

if __name__ == "__main__":
    main()
