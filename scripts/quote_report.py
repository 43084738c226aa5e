"""Quote a benchmark report in the pages: see ``--help`` (:mod:`sb3_dreamer.benchmark.quotes`)."""

from sb3_dreamer.benchmark.quotes import main

if __name__ == "__main__":
    main()
