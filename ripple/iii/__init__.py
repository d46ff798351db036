"""iii compatibility: workers written with the iii SDKs run against a ripple store (DESIGN §9)."""
