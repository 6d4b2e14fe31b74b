"""The real-time side: topic names, event encoding, the per-worker hub, subscription streams."""
