"""Fanout: turns each stored event into one delivery per matching subscription."""
