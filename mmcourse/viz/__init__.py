"""The plots the chapters share: images, audio, attention, training."""
