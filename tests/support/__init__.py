"""Helpers shared by the test suite (importable as ``support``: pytest's ``pythonpath`` puts ``tests`` on the path).

- :mod:`support.processes`: child processes: ``ml-dash serve`` servers, CLI runs and the
  scripts in the ``procs`` folders, with the environment every child gets.
- :mod:`support.files`: reading what ML-Dash wrote (strict JSON, JSON lines, stream paths).
- :mod:`support.experiments`: helpers of the public-API tests.
- :mod:`support.app`: the server app in-process, driven through httpx.
"""
