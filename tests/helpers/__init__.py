"""What tests of every kind share: the daemon machinery, the harness that drives it
through the real CLI, the one polling helper, fakes' plumbing and the repository's paths.
The fixtures built on them are in ``tests/conftest.py``."""
