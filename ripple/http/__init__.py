"""ripple.http."""
