"""The file to hand to spark-submit: `spark-submit [options] "$(python -m rtic.score.spark_submit)" classify ... --engine spark`.

spark-submit runs only a `.py` file as a Python application (the `rtic` console script has no suffix, so
spark-submit takes it for a jar). Run as a module, this prints its own path; run as that file by
spark-submit, it is the `rtic` command line.
"""

import os
import sys

if __name__ == "__main__":
    if sys.argv[1:] or "pyspark" in sys.modules or os.environ.get("PYSPARK_GATEWAY_PORT"):
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # rtic/score/ must not shadow top-level modules
        from rtic.cli import main

        sys.exit(main())
    print(os.path.abspath(__file__))
