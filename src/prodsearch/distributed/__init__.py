"""Running prodsearch beyond one process: Ray Data encoding and torch.distributed (DDP) training.

Heavy engines (ray, torch.distributed) are imported lazily inside the modules that need them.
"""
