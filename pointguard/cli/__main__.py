"""`python -m pointguard.cli`: the `pointguard` command without the console script."""

from pointguard.cli import main

if __name__ == "__main__":
    main()
