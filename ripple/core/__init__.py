"""ripple's pure core: records, update ops, validation and decisions. No I/O, no event loop."""
