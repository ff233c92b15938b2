"""genlab: a laboratory for generative AI in PyTorch."""

import os

# Transparent huge pages for PyTorch's CPU tensors of 2 MB and more (c10's alloc_cpu reads this
# variable once; set after `import torch` and before any tensor it still took effect here; a value
# already in the environment wins, THP_MEM_ALLOC_ENABLE=0 turns it off). glibc maps every
# allocation above 32 MB afresh, and in a virtual machine each first touch of a 4 kB page is a
# costly fault: on this project's AMD EPYC VMs (kernel "-fc", 1 thread) a fresh 64 MB zeros tensor
# (a 32k x 512 embedding's gradient) took 111 ms with 4 kB pages and 27 ms with huge pages, against
# 15 ms for filling a buffer that already exists. Big logits and embedding gradients are allocated
# every step (the gain on whole training runs has not been measured yet).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
