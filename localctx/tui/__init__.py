"""The Textual app: screens, widgets, workers. The only package that imports Textual.

`make_app(settings, ...)` is the one entry point: the CLI passes real parts, tests pass a
FakeEngine and fixed gauge readings.
"""

from localctx.tui.app import LocalctxApp, make_app
from localctx.tui.settings import ChatSettings

__all__ = ["ChatSettings", "LocalctxApp", "make_app"]
