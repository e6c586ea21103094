"""`python -m localctx` runs the same CLI as the `localctx` console script."""

from localctx.cli import main

if __name__ == "__main__":
    main()
