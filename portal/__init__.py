"""Patient-portal invitations: patients, invitations, statuses, activation, an SMTP outbox.

An aiohttp sub-application with its own settings (portal.config.PortalConfig):
`portal.app.create_portal(...)` builds it and `portal.app.mount(...)`
serves it from the composition root's app; `portal.cli.add_commands` adds
`visitroom portal ...`. It imports only common/, never the signalling server.
See docs/portal.md.
"""
