"""Portway benchmarks: direct, socat and OpenSSH baselines against Portway's paths, on loopback.

Run with ``make bench`` (or ``.venv/bin/python -m bench --help``); see ``bench/README.md``.
"""
