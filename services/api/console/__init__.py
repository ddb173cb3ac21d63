"""The operator console: server-rendered pages under `/console` (Jinja2 templates, a little
vanilla JavaScript with EventSource for the live parts, no front-end build).

What it shows and where each part comes from is in docs/operations.md ("Operator console").
"""
