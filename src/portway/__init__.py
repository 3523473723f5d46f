"""Portway: a self-hosted service tunnel.

A hub runs somewhere reachable; agents expose private services through it and reach them on their
own localhost. See ``docs/`` and ``ARCHITECTURE`` for the design.
"""

__version__ = "0.1.0"
