"""An example vqstack plugin."""
