"""
The benchmark grid of sb3-dreamer (``python -m sb3_dreamer.benchmark`` or ``scripts/benchmark.py``): RL Zoo runs of
algorithms x env ids x seeds, their final scores and their report, and the reading of their TensorBoard logs.
"""
