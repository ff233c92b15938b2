"""Tier 5: reinforcement learning on gymnasium's control tasks.

- :mod:`~genlab.rl.envs`: the known environments and a vectorised env that resumes exactly
- :mod:`~genlab.rl.policy`: the policy / value network
- :mod:`~genlab.rl.agents`: rollouts, REINFORCE with a baseline, PPO (GAE and the clipped
  surrogate of :mod:`genlab.objectives.policy`, shared with RLHF)
- :mod:`~genlab.rl.evaluate`: mean / std return over 100 episodes, with optional noise
- :mod:`~genlab.rl.bc`: behaviour cloning of an agent's trajectories (supervised vs RL)
- :mod:`~genlab.rl.play`: episodes to a GIF; :mod:`~genlab.rl.runs`: a run directory back into its policy

gymnasium is an optional dependency (``pip install 'genlab[rl]'``), imported only when an
environment is made.
"""
