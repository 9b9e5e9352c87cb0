"""FlagRelease: turn a chip x model matrix into tested, published FlagOS images."""
