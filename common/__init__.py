"""What signalling, the portal and the CLI share: tokens and scopes, the audit
trail, clocks, rate limits, the JSON codec, data-dir privacy, one SQLite
thread. It imports none of our other packages."""
