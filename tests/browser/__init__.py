"""The operator console in a real browser (Playwright driving the system's Chromium)."""
