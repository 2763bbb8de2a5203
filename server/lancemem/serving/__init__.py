"""Serving HTTP and stdio: transports, Host/Origin and rate limits, JWT checks."""
