"""Rules of the product with no I/O: secrets, addresses, names, time."""
