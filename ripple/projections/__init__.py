"""ripple.projections."""
