"""Tests of the sans-IO codecs in :mod:`portway.wire`."""
