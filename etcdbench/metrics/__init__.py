"""Latency histograms, time series and CPU sampling."""
