"""Practices, their staff users, and sign-in sessions (docs/operations.md, Practice users
and sign-in). Stands on common/ and the portal's mail outbox; never on signalling/."""
