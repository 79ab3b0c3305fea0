"""The wire protocol shared by agent and collector, and the pure helpers both sides need."""
