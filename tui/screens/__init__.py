"""Screens of the console: the main screen and the star look-up."""

from tui.screens.lookup import LookupScreen
from tui.screens.main import MainScreen

__all__ = ["LookupScreen", "MainScreen"]
