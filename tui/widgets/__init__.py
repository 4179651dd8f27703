"""The app's widgets: neuron tree, neuron detail, filter bar and results."""
