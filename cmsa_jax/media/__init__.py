"""Reading images, video frames and clips: what the dataset builders, the input
pipeline and prediction share."""
