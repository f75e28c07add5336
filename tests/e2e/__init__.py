"""Browser tests: Bürger-ID and the demo portals in Debian's Chromium, driven by Playwright.

A package, so that its conftest and helper modules get their own module names (``e2e.conftest``)
next to the suite's tests/conftest.py.
"""
