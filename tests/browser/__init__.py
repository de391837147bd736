"""Browser tests (issue 18): a package, so its conftest does not shadow tests/conftest.py."""
