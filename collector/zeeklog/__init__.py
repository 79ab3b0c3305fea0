"""Zeek-format logs written by collectord itself: Zeek's ASCII and JSON log formats, rotation."""
