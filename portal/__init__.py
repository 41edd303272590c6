"""Patient-portal invitations: patients, invitations, statuses, activation, an SMTP outbox.

`portal.routes.setup(app)` mounts the REST routes and background tasks on the
signalling app; `portal.cli.add_commands` adds `visitroom portal ...`.
See docs/portal.md.
"""
