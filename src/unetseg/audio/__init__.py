"""Bird sound: recordings -> spectrogram images, annotations <-> masks and events, denoising."""

MAX_FFT, MAX_MELS, MAX_RATE = 65536, 1024, 384_000  # samples; mel bands; Hz (spectrogram settings and flags)
