"""Item encoders: text, image and attribute towers fused into one item embedding."""
