"""Data: synthetic phantoms, real fixtures, the sample datastore and the Medical Decathlon."""
