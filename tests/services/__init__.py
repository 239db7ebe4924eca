"""Launchers for the real store servers the test suite runs against.

Each module exposes a context manager that starts one server on a free
loopback port, yields how to reach it, and stops it (and only it) on exit.
"""
