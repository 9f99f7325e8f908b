"""The chaos suite uses the system tests' fresh-database fixture."""

from tests.system.conftest import projection_settings

__all__ = ["projection_settings"]
