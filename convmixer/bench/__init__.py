"""The training-speed benchmark against the PyTorch reference: what is timed (spec), the timing
(measure, torch_reference), and its command (cli)."""
