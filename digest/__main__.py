"""`python -m digest`: the same as the `digest` command."""

from digest.cli import main

if __name__ == "__main__":  # not when a worker process imports this module as its main
    main()
