import pytest

# The helpers in tests/support assert too (a 201, a signature, a status): rewrite their asserts
# as pytest does a test's, so that a failing one says what it compared. Registered here, the
# package every test module and conftest is imported through, before any helper is imported.
pytest.register_assert_rewrite("tests.support")
