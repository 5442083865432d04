"""``python -m mvdit ...``: the mvdit command line, in this process."""

import sys

from . import _mvdit


def main() -> None:
    sys.exit(_mvdit.main(["mvdit", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
