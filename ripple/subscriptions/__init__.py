"""ripple.subscriptions."""
