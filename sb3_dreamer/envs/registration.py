"""Gymnasium ids ``<Game>-MinAtar`` and ``<Game>POMDP-MinAtar`` for the five MinAtar games."""

import gymnasium as gym

GAME_IDS: dict[str, str] = {
    "asterix": "Asterix",
    "breakout": "Breakout",
    "freeway": "Freeway",
    "seaquest": "Seaquest",
    "space_invaders": "SpaceInvaders",
}
MAX_EPISODE_STEPS = 10_000


def register_minatar_envs() -> None:
    """Register the ten MinAtar ids; ids already in ``gymnasium.registry`` are left alone, so this is idempotent."""
    for game, name in GAME_IDS.items():
        for env_id, entry_point in (
            (f"{name}-MinAtar", "sb3_dreamer.envs.minatar:MinAtarEnv"),
            (f"{name}POMDP-MinAtar", "sb3_dreamer.envs.pomdp:make_pomdp"),
        ):
            if env_id not in gym.registry:
                gym.register(env_id, entry_point=entry_point, max_episode_steps=MAX_EPISODE_STEPS, kwargs={"game": game})
