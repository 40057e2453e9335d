"""MMAD-style question sets from labelled images: the builtin model's training data and `riad eval qa`."""
