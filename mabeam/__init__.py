"""MABEAM: multi-agent coordination on the ``otp`` kernel."""
