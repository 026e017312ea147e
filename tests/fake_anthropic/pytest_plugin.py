"""pytest fixtures for the fake Anthropic API.

Import them into a conftest.py (``pytest_plugins`` is only honoured in the root conftest)::

    from tests.fake_anthropic.pytest_plugin import (  # noqa: F401
        fake_anthropic,
        fake_anthropic_factory,
    )
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from .server import FakeAnthropic, ReplyLike

FakeFactory = Callable[..., FakeAnthropic]


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started fake with an empty script (every main turn gets the default end_turn text).

    Configure it in the test: ``fake_anthropic.set_script([...])``, ``.fail_with(401)``.
    """
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_anthropic_factory() -> Iterator[FakeFactory]:
    """Make more fakes (started; stopped at teardown): ``factory([reply(...)], side_text=...)``."""
    started: list[FakeAnthropic] = []

    def make(script: Iterable[ReplyLike] = (), **kwargs: object) -> FakeAnthropic:
        fake = FakeAnthropic(script, **kwargs)  # type: ignore[arg-type]
        started.append(fake.start())
        return fake

    yield make
    for fake in started:
        fake.stop()
