"""Run the hostile-input catalogue (the package ``hostile`` beside this script) against the CLI.

    python tools/hostile.py [--only CLASS] [--json out.json] [--jobs 2] [--launcher fresh|fork]

See ``tools/hostile/__init__.py``; this script only calls its ``__main__``. Python puts this
script's folder first on ``sys.path``, where the package ``hostile/`` takes precedence over
this file of the same name.
"""
import sys

from hostile.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
