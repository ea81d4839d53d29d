"""The GPU worker: pull jobs, batch them onto the GPU, deliver images."""
