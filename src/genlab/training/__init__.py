"""Tier 3: the training engine. It receives models, losses and data as arguments and
never imports ``genlab.models``: the same loop trains a GPT, a VAE or a GAN."""
