"""visitroom's Python server SDK, for the backends that embed visitroom: see visitroom.client."""
