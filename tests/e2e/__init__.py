"""Browser tests: Bürger-ID and the demo portals in Debian's Chromium, driven by Playwright.

A package (unlike the other test folders) so that its conftest and helper modules get their
own module names and do not replace the suite's ``conftest`` that other tests import.
"""
