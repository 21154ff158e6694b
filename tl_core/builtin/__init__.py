"""The core's own behaviour, as ordinary plugins registered through the same manager as everyone else's."""
