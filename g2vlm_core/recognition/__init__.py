"""Recognition: keyframe recognizers (one interface, one module per backend) whose instances feed the object map."""
