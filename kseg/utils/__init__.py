"""Model summaries: parameters, multiply-adds and latency."""

from kseg.utils.latency import measure_latency
from kseg.utils.summary import count_macs, count_params, summarize

__all__ = ["count_macs", "count_params", "measure_latency", "summarize"]
