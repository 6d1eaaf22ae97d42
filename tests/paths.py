"""Where the tests find the project's files, whatever layer folder a test lives in."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"  # committed results samples and fixtures of the tests
RESULTS = ROOT / "results"  # the committed results files the README and docs quote
SNAPSHOTS = DATA / "snapshots"  # whole renderings the console tests compare with (cli_console.snapshot)
