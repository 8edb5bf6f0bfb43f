"""pbx-cdr: call detail records and recordings for a FreeSWITCH call centre."""

__version__ = "0.1.0"
