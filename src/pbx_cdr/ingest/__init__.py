"""Parsing what arrives (JSON CDRs, FreeSWITCH legs) into calls: pure functions."""
