"""The fault suite: the real services under load while their processes and dependencies fail.

`python -m chaos --help`; `make chaos` runs the full suite. See docs/reliability.md.
"""
