from fake_modal.fixture import fake_modal  # noqa: F401 - the fixture
