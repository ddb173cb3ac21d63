"""What the tests share and do not test: the service processes (`stack`), a cuttable TCP proxy,
containers, topic offsets, a webhook receiver, and the stand-in Akave SDK (`akave_stub/`)."""

from pathlib import Path

AKAVE_STUB = Path(__file__).resolve().parent / "akave_stub"
"""Put this on `sys.path` (or PYTHONPATH) and `import akavesdk` finds the stand-in SDK."""
