"""Bird sound: recordings -> spectrogram images, annotations <-> masks and events, denoising."""
