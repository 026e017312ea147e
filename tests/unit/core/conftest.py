"""The core's tests run a real store and runtime in this process against a scripted
backend (``tests/helpers/scripted_backend.py``)."""

from tests.helpers.scripted_backend import backend, runtime  # noqa: F401 - fixtures
