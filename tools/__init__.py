"""Developer scripts, run from the repository root (``python tools/fuzz.py``); not installed.

A package so that the test suite imports the fuzz targets as ``tools.fuzzing`` without any
``sys.path`` edit (pytest puts the repository root on the path for the ``tests`` package).
"""
