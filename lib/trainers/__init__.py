"""The TrainTask and what it runs on: validation, weight average, publishing, resume points, the retrain trigger;
and the compact loop that trains the small networks."""
