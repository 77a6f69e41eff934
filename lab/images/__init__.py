"""Target disk images for the lab: Debian roots built from packages (see debian.build)."""
