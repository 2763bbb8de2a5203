"""The core: errors, settings, scope and filter compilation, records. Imports nothing above it."""
