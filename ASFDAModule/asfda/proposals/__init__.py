"""Few-shot proposals without training: coarse label maps refined before the radiologist sees them."""
