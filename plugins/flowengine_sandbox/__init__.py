"""A local emulator of Podio's authorization server."""
