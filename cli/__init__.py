"""Command-line entry points: `akave-gateway` (`cli.main`) and its operator tools (`cli.parked`)."""
