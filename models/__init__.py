"""Model zoo (installed as ``neurocompile.zoo``): spiking architectures, their training script and
shipped checkpoints. See ``registry`` for the checkpoint format and ``ZOO`` names."""
