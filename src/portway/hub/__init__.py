"""The hub process: configuration, first-start bootstrap, listeners and their lifecycle."""
