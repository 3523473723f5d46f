"""Test helpers shipped with Portway: throwaway PostgreSQL clusters, hub processes, free ports.

Portway's own suite uses them, and so can projects that embed a hub in their tests.
"""
