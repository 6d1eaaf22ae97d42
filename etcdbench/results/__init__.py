"""The results file: model, verdict, environment metadata and atomic I/O."""
