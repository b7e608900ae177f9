"""Dataset adapters, the shared manifest shape, skin-tone (ITA) estimation and the image cache."""
